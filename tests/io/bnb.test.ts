import { describe, expect, it } from 'vitest';
import {
  BnbCheckpointError,
  bnbQuantizationConfig,
  bnbWeightTensors,
  isBnb4bitConfig,
  openBnbCheckpoint,
  pyFloatRepr,
  pyJsonDumps,
  quantStateJson,
  quantizeLinearWeight,
  quantizedLinears,
  writeBnbCheckpoint,
} from '../../src/io/bnb';
import { memoryFiles } from '../../src/io/files';
import { openSafetensors, readTensorBytes, writeSafetensors, type TensorToWrite } from '../../src/io/safetensors';
import { openCheckpoint } from '../../src/model/checkpoint';
import { dequantizeNf4 } from '../../src/quant/nf4';
import * as ref from '../../src/ref/nf4';
import { tinyCheckpointFiles, tinyConfigJson, tinyWeights, type TinyArch } from '../helpers/tiny-models';

// Write a transformers + bitsandbytes 4-bit checkpoint from a tiny float checkpoint, read it back,
// and check every quantized linear against an independent quantization of the original weight with
// the reference (src/ref/nf4.ts): packed codes, scales and nested constants bit for bit, and the
// dequantized weights bit for bit. Unquantized tensors must come back byte for byte.

const bits = (a: ArrayLike<number>): number[] => [...new Uint32Array(Float32Array.from(a).buffer)];
const f32 = (u: Uint8Array): Float32Array => new Float32Array(u.slice().buffer);

async function quantizedFiles(arch: TinyArch, opts: { dtype?: 'F32' | 'F16' | 'BF16'; shards?: number; doubleQuant?: boolean; blocksize?: number } = {}) {
  const cfg = tinyConfigJson(arch);
  const src = tinyCheckpointFiles(cfg, { dtype: opts.dtype, shards: opts.shards });
  const ckpt = await openCheckpoint(memoryFiles('tiny', src));
  const out = await writeBnbCheckpoint(ckpt, { doubleQuant: opts.doubleQuant, blocksize: opts.blocksize });
  return { cfg, src, ckpt, out };
}

/** Rewrite model.safetensors with `edit` applied to its tensors. */
async function edited(out: Record<string, Uint8Array | string>, edit: (t: TensorToWrite[]) => TensorToWrite[]): Promise<Record<string, Uint8Array | string>> {
  const f = await openSafetensors(await memoryFiles('q', out).open('model.safetensors'));
  const tensors: TensorToWrite[] = [];
  for (const [name, info] of f.tensors) tensors.push({ name, dtype: info.dtype, shape: [...info.shape], data: (await readTensorBytes(f, name)).slice() });
  return { ...out, 'model.safetensors': writeSafetensors(edit(tensors), { format: 'pt' }) };
}

const replace = (name: string, over: Partial<TensorToWrite>) => (ts: TensorToWrite[]) => ts.map((t) => (t.name === name ? { ...t, ...over } : t));

describe('bitsandbytes 4-bit checkpoints (src/io/bnb.ts)', () => {
  const cases: { arch: TinyArch; dtype: 'F32' | 'F16' | 'BF16'; doubleQuant: boolean; shards: number; blocksize: number }[] = [
    { arch: 'llama', dtype: 'F32', doubleQuant: true, shards: 1, blocksize: 64 },
    { arch: 'qwen2', dtype: 'BF16', doubleQuant: false, shards: 1, blocksize: 64 },
    { arch: 'gpt2', dtype: 'F16', doubleQuant: true, shards: 2, blocksize: 64 },
    { arch: 'llama', dtype: 'BF16', doubleQuant: true, shards: 1, blocksize: 32 },
  ];
  for (const c of cases) {
    it(`round trip: ${c.arch} ${c.dtype}${c.shards > 1 ? ' sharded' : ''}, ${c.doubleQuant ? 'double' : 'single'} quant, blocksize ${c.blocksize}`, async () => {
      const { ckpt, out } = await quantizedFiles(c.arch, c);
      const bnb = await openBnbCheckpoint(memoryFiles('quantized', out));
      const lin = quantizedLinears(bnb.config);
      expect([...bnb.linears.keys()].sort()).toEqual(lin.map((d) => d.module).sort());
      for (const d of lin) {
        // Independent quantization of the original weight with the reference, as [out, in].
        const w = await ckpt.readF32(`${d.module}.weight`);
        const W = new Float32Array(d.out * d.in);
        for (let o = 0; o < d.out; o++) for (let k = 0; k < d.in; k++) W[o * d.in + k] = d.layout === 'out_in' ? w[o * d.in + k] : w[k * d.out + o];
        const q = await bnb.readNf4(d.module);
        expect(q.shape).toEqual([d.out, d.in]);
        expect(q.blocksize).toBe(c.blocksize);
        const info = bnb.linears.get(d.module)!;
        expect(info.dtype).toBe({ F32: 'float32', F16: 'float16', BF16: 'bfloat16' }[c.dtype]);
        if (c.doubleQuant) {
          const r = ref.quantizeNf4Double(W, c.blocksize);
          expect(Buffer.from(q.packed).equals(Buffer.from(r.packed)), `${d.module} codes`).toBe(true);
          expect(Buffer.from(q.nested!.qabsmax).equals(Buffer.from(r.qabsmax)), `${d.module} qabsmax`).toBe(true);
          expect(bits(q.nested!.absmax2)).toEqual(bits(r.absmax2));
          expect(bits(q.nested!.code8)).toEqual(bits(r.code8));
          expect(bits([q.nested!.offset])).toEqual(bits([r.offset]));
          expect(bits(dequantizeNf4(q))).toEqual(bits(ref.dequantizeNf4Double(r)));
        } else {
          const r = ref.quantizeNf4(W, c.blocksize);
          expect(Buffer.from(q.packed).equals(Buffer.from(r.packed)), `${d.module} codes`).toBe(true);
          expect(bits(q.absmax!)).toEqual(bits(r.absmax));
          expect(bits(dequantizeNf4(q))).toEqual(bits(ref.dequantizeNf4(r.packed, r.absmax, W.length, c.blocksize)));
        }
      }
      // Everything else (embeddings, norms, biases, lm_head) unquantized, same dtype, same bytes.
      const quantizedWeights = new Set(lin.map((d) => `${d.module}.weight`));
      for (const [name, { file, info }] of ckpt.tensors) {
        if (quantizedWeights.has(name)) continue;
        const back = bnb.tensors.get(name)!;
        expect(back.info.dtype, name).toBe(info.dtype);
        expect(back.info.shape).toEqual(info.shape);
        const a = await file.source.read(info.start, info.byteLength);
        const b = await back.file.source.read(back.info.start, back.info.byteLength);
        expect(Buffer.from(a).equals(Buffer.from(b)), name).toBe(true);
        expect(bits(await bnb.readF32(name))).toEqual(bits(await ckpt.readF32(name)));
      }
    });
  }

  it('writes the layout transformers + bitsandbytes save (names, dtypes, shapes, quant_state JSON, config)', async () => {
    const { cfg, out } = await quantizedFiles('llama', {});
    const f = await openSafetensors(await memoryFiles('q', out).open('model.safetensors'));
    expect(f.metadata).toEqual({ format: 'pt' });
    const p = 'model.layers.0.mlp.down_proj.weight'; // [32, 72]: 2304 values, 36 blocks of 64
    const t = (k: string) => f.tensors.get(k)!;
    expect([t(p).dtype, t(p).shape]).toEqual(['U8', [1152, 1]]);
    expect([t(`${p}.absmax`).dtype, t(`${p}.absmax`).shape]).toEqual(['U8', [36]]);
    expect([t(`${p}.quant_map`).dtype, t(`${p}.quant_map`).shape]).toEqual(['F32', [16]]);
    expect([t(`${p}.nested_absmax`).dtype, t(`${p}.nested_absmax`).shape]).toEqual(['F32', [1]]);
    expect([t(`${p}.nested_quant_map`).dtype, t(`${p}.nested_quant_map`).shape]).toEqual(['F32', [256]]);
    expect(bits(f32(await readTensorBytes(f, `${p}.quant_map`)))).toEqual(bits(ref.NF4_CODE));
    expect(bits(f32(await readTensorBytes(f, `${p}.nested_quant_map`)))).toEqual(bits(ref.createDynamicMap()));
    // Embeddings and norms unquantized; no lm_head in a tied model.
    expect(t('model.embed_tokens.weight').dtype).toBe('F32');
    expect(t('model.norm.weight').dtype).toBe('F32');
    expect(f.tensors.has('model.embed_tokens.weight.absmax')).toBe(false);

    // json.dumps of the non-tensor QuantState items, in as_dict's key order with Python's separators.
    const state = new TextDecoder().decode(await readTensorBytes(f, `${p}.quant_state.bitsandbytes__nf4`));
    const w = tinyWeights(cfg).get(p)!.data;
    const offset = ref.quantizeNf4Double(w, 64).offset;
    expect(state).toBe(
      `{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [32, 72], "nested_blocksize": 256, ` +
        `"nested_dtype": "float32", "nested_offset": ${pyFloatRepr(offset)}}`,
    );
    expect(JSON.parse(state).nested_offset).toBe(offset);
    expect(t(`${p}.quant_state.bitsandbytes__nf4`)).toMatchObject({ dtype: 'U8', shape: [state.length] });

    // config.json: the original text plus quantization_config as transformers writes it.
    const text = out['config.json'] as string;
    const original = JSON.stringify(cfg, null, 2);
    expect(text.startsWith(original.slice(0, -2))).toBe(true);
    const parsed = JSON.parse(text) as Record<string, unknown>;
    expect(isBnb4bitConfig(parsed)).toBe(true);
    expect(parsed.quantization_config).toEqual({
      _load_in_4bit: true,
      _load_in_8bit: false,
      bnb_4bit_compute_dtype: 'float32',
      bnb_4bit_quant_storage: 'uint8',
      bnb_4bit_quant_type: 'nf4',
      bnb_4bit_use_double_quant: true,
      llm_int8_enable_fp32_cpu_offload: false,
      llm_int8_has_fp16_weight: false,
      llm_int8_skip_modules: null,
      llm_int8_threshold: 6,
      load_in_4bit: true,
      load_in_8bit: false,
      quant_method: 'bitsandbytes',
    });
    // BitsAndBytesConfig.post_init requires a float threshold: it must be written as 6.0.
    expect(text).toContain('"llm_int8_threshold": 6.0,');
    expect(text).toContain('\n  "quantization_config": {\n    "_load_in_4bit": true,\n');
    for (const [k, v] of Object.entries(cfg)) expect(parsed[k]).toEqual(v);
  });

  it('a Qwen2.5-0.5B q_proj [896, 896] gets the tensor shapes of a published *-bnb-4bit checkpoint', () => {
    const w = Float32Array.from({ length: 896 * 896 }, (_, i) => Math.sin(i) * 0.02);
    const q = quantizeLinearWeight(w, { module: 'model.layers.0.self_attn.q_proj', short: 'q_proj', in: 896, out: 896, layout: 'out_in', bias: true });
    const ts = bnbWeightTensors('model.layers.0.self_attn.q_proj', q, 'bfloat16');
    const byName = Object.fromEntries(ts.map((t) => [t.name.replace('model.layers.0.self_attn.q_proj.', ''), [t.dtype, t.shape]]));
    expect(byName).toEqual({
      weight: ['U8', [401408, 1]],
      'weight.absmax': ['U8', [12544]],
      'weight.nested_absmax': ['F32', [49]],
      'weight.nested_quant_map': ['F32', [256]],
      'weight.quant_map': ['F32', [16]],
      'weight.quant_state.bitsandbytes__nf4': ['U8', [expect.any(Number)]],
    });
  });

  it('GPT-2: Conv1D weights are quantized transposed to [out, in], names keep transformer.', async () => {
    const { out } = await quantizedFiles('gpt2', {});
    const f = await openSafetensors(await memoryFiles('q', out).open('model.safetensors'));
    const p = 'transformer.h.0.attn.c_attn.weight'; // Conv1D [32, 96] → quantized as [96, 32]
    const state = JSON.parse(new TextDecoder().decode(await readTensorBytes(f, `${p}.quant_state.bitsandbytes__nf4`))) as { shape: number[] };
    expect(state.shape).toEqual([96, 32]);
    expect(f.tensors.get('transformer.h.0.attn.c_attn.bias')!.dtype).toBe('F32');
    expect(f.tensors.has('transformer.wpe.weight')).toBe(true);
    expect(f.tensors.has('transformer.wte.weight.absmax')).toBe(false);
  });

  it('Python-compatible JSON: float repr and separators', () => {
    const cases: [number, string][] = [
      [0.5, '0.5'],
      [6, '6.0'],
      [123, '123.0'],
      [1e-5, '1e-05'],
      [0.0001, '0.0001'],
      [1.5e-7, '1.5e-07'],
      [1e16, '1e+16'],
      [1234567890123456.7, '1234567890123456.8'],
      [Math.fround(0.1), '0.10000000149011612'],
      [-2.5e-10, '-2.5e-10'],
      [0, '0.0'],
    ];
    for (const [x, s] of cases) expect(pyFloatRepr(x), String(x)).toBe(s);
    expect(pyJsonDumps({ a: [1, 2], b: 'é', c: null })).toBe('{"a": [1, 2], "b": "\\u00e9", "c": null}');
    expect(pyJsonDumps({ a: [1], b: {} }, 2)).toBe('{\n  "a": [\n    1\n  ],\n  "b": {}\n}');
    const q = { shape: [3, 4], blocksize: 64, packed: new Uint8Array(6), absmax: new Float32Array(1), nested: null };
    expect(quantStateJson(q, 'bfloat16')).toBe('{"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [3, 4]}');
    expect(Object.keys(bnbQuantizationConfig())).toEqual([...Object.keys(bnbQuantizationConfig())].sort());
  });

  it('refuses to quantize a quantized checkpoint', async () => {
    const { out } = await quantizedFiles('llama', {});
    // openCheckpoint rejects the U8 weights first; a float checkpoint with a quantization_config is refused here.
    const cfg = { ...tinyConfigJson('llama'), quantization_config: bnbQuantizationConfig() };
    const ckpt = await openCheckpoint(memoryFiles('q', { ...tinyCheckpointFiles(tinyConfigJson('llama')), 'config.json': JSON.stringify(cfg) }));
    await expect(writeBnbCheckpoint(ckpt)).rejects.toThrow(/already has a quantization_config/);
    // (the float-checkpoint reader refuses the packed weights: that is openBnbCheckpoint's job)
    await expect(openCheckpoint(memoryFiles('q', out))).rejects.toThrow(/has shape \[512, 1\]/);
  });

  describe('validation names the file and the tensor', () => {
    const p = 'model.layers.1.self_attn.k_proj.weight'; // [16, 32]: 512 values, 8 blocks
    const expectError = async (files: Record<string, Uint8Array | string>, re: RegExp) => {
      const e = await openBnbCheckpoint(memoryFiles('bad', files)).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).message).toMatch(re);
    };
    const stateOf = (over: Record<string, unknown>): Uint8Array => {
      const s = { quant_type: 'nf4', blocksize: 64, dtype: 'float32', shape: [16, 32], nested_blocksize: 256, nested_dtype: 'float32', nested_offset: 0.01, ...over };
      return new TextEncoder().encode(JSON.stringify(s));
    };
    const withState = (over: Record<string, unknown>) => {
      const data = stateOf(over);
      return replace(`${p}.quant_state.bitsandbytes__nf4`, { data, shape: [data.length] });
    };

    it('config.json problems', async () => {
      const { out, cfg } = await quantizedFiles('llama', {});
      await expectError({ ...out, 'config.json': JSON.stringify(cfg) }, /bad\/config.json: has no "quantization_config"/);
      const qc = (over: Record<string, unknown>) => JSON.stringify({ ...cfg, quantization_config: { ...bnbQuantizationConfig(), llm_int8_threshold: 6, ...over } });
      await expectError({ ...out, 'config.json': qc({ bnb_4bit_quant_type: 'fp4' }) }, /only "nf4" is supported/);
      await expectError({ ...out, 'config.json': qc({ quant_method: 'gptq' }) }, /only "bitsandbytes"/);
      await expectError({ ...out, 'config.json': qc({ load_in_4bit: false, _load_in_4bit: false, load_in_8bit: true }) }, /not 4-bit/);
      await expectError({ ...out, 'config.json': qc({ bnb_4bit_quant_storage: 'bfloat16' }) }, /quant_storage is "bfloat16"/);
    });

    it('tensor problems', async () => {
      const { out } = await quantizedFiles('llama', {});
      await expect(openBnbCheckpoint(memoryFiles('ok', out))).resolves.toBeTruthy();
      const cases: [(t: TensorToWrite[]) => TensorToWrite[], RegExp][] = [
        [replace(p, { shape: [128, 2] }), new RegExp(`model.safetensors: tensor "${p}": has shape \\[128, 2\\], expected \\[256, 1\\]`)],
        [replace(p, { dtype: 'I8' }), /tensor ".*k_proj.weight": has dtype I8, expected U8/],
        [(ts) => ts.filter((t) => t.name !== `${p}.nested_absmax`), /tensor ".*k_proj.weight.nested_absmax": is missing/],
        [(ts) => ts.filter((t) => t.name !== `${p}.absmax`), /tensor ".*k_proj.weight.absmax": is missing/],
        [replace(`${p}.absmax`, { dtype: 'F32', data: new Uint8Array(32), shape: [8] }), /k_proj.weight.absmax": has dtype F32, expected U8/],
        [replace(`${p}.absmax`, { data: new Uint8Array(9), shape: [9] }), /k_proj.weight.absmax": has shape \[9\], expected \[8\]/],
        [replace(`${p}.nested_quant_map`, { data: new Uint8Array(1020), shape: [255] }), /nested_quant_map": has shape \[255\], expected \[256\]/],
        [replace(`${p}.quant_map`, { data: new Uint8Array(64) }), /k_proj.weight.quant_map": entry 0 is 0, not the NF4 code value -1/],
        [withState({ quant_type: 'fp4' }), /quant_state.bitsandbytes__nf4": quant_type is "fp4"/],
        [withState({ shape: [32, 16] }), /shape \[32,16\] but config.json implies \[16, 32\]/],
        [withState({ blocksize: 48.5 }), /blocksize must be an even integer/],
        [withState({ nested_blocksize: 100 }), /nested_blocksize 100 is not a power of two/],
        [withState({ nested_offset: 'x' }), /nested_offset "x" is not a finite number/],
        [replace(`${p}.quant_state.bitsandbytes__nf4`, { data: new Uint8Array([0xff, 0xfe]), shape: [2] }), /is not UTF-8 JSON/],
        [(ts) => ts.map((t) => (t.name === `${p}.quant_state.bitsandbytes__nf4` ? { ...t, name: `${p}.quant_state.bitsandbytes__fp4` } : t)), /is FP4-quantized/],
        [
          (ts) => [...ts, { name: 'model.embed_tokens.weight.absmax', dtype: 'F32', shape: [1], data: new Uint8Array(4) }],
          /tensor "model.embed_tokens.weight.absmax": belongs to a quantized "model.embed_tokens"/,
        ],
        [replace('model.norm.weight', { dtype: 'U8', data: new Uint8Array(32), shape: [32] }), /model.norm.weight": has dtype U8; an unquantized tensor must be/],
      ];
      for (const [edit, re] of cases) await expectError(await edited(out, edit), re);
    });

    it('read errors: non-finite scales, unknown modules, quantized tensors through readF32', async () => {
      const { out } = await quantizedFiles('llama', {});
      const nan = new Uint8Array(new Float32Array([NaN]).buffer);
      const bnb = await openBnbCheckpoint(memoryFiles('q', await edited(out, replace(`${p}.nested_absmax`, { data: nan }))));
      await expect(bnb.readNf4('model.layers.1.self_attn.k_proj')).rejects.toThrow(/k_proj.weight.nested_absmax": entry 0 is NaN/);
      await expect(bnb.readNf4('model.embed_tokens')).rejects.toThrow(BnbCheckpointError);
      await expect(bnb.readF32(p)).rejects.toThrow(/has dtype U8; readF32 reads/);
    });
  });
});

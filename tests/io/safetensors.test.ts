import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bytesSource } from '../../src/io/bytes';
import {
  fromF32,
  openSafetensors,
  readTensorF32,
  writeSafetensors,
  type TensorToWrite,
} from '../../src/io/safetensors';
import { SKIP_FIXTURES_MESSAGE, fixture, hasFixture } from '../helpers/fixtures';

const f32 = (n: number, start = 0): Uint8Array => fromF32(Float32Array.from({ length: n }, (_, i) => start + i), 'F32');

function make(header: object | string, dataBytes: number): Uint8Array {
  const json = typeof header === 'string' ? header : JSON.stringify(header);
  const hb = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hb.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(hb.length), true);
  out.set(hb, 8);
  return out;
}

async function openErr(bytes: Uint8Array): Promise<Error> {
  return openSafetensors(bytesSource('bad.safetensors', bytes)).then(
    () => {
      throw new Error('expected an error');
    },
    (e: Error) => e,
  );
}

describe('safetensors writer', () => {
  it('matches the worked example of peft-spec §3 byte for byte in layout', () => {
    const lora: TensorToWrite[] = [
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', dtype: 'F32', shape: [64, 8], data: f32(512) },
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', dtype: 'F32', shape: [8, 64], data: f32(512) },
    ];
    const bytes = writeSafetensors(lora, { format: 'pt' });
    expect(bytes.byteLength).toBe(4384);
    expect([...bytes.subarray(0, 8)]).toEqual([0x18, 0x01, 0, 0, 0, 0, 0, 0]);
    const header = new TextDecoder().decode(bytes.subarray(8, 8 + 280));
    expect(header.trimEnd()).toBe(
      '{"__metadata__":{"format":"pt"},"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight":{"dtype":"F32","shape":[8,64],"data_offsets":[0,2048]},"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight":{"dtype":"F32","shape":[64,8],"data_offsets":[2048,4096]}}',
    );
  });

  it('round-trips F32, F16 and BF16 tensors', async () => {
    const vals = Float32Array.from([0, 1, -2.5, 3.140625, 65504, 1e-3]);
    const bytes = writeSafetensors([
      { name: 'a', dtype: 'F32', shape: [2, 3], data: fromF32(vals, 'F32') },
      { name: 'b', dtype: 'F16', shape: [6], data: fromF32(vals, 'F16') },
      { name: 'c', dtype: 'BF16', shape: [3, 2], data: fromF32(vals, 'BF16') },
      { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Uint8Array(0) },
      { name: 'scalar', dtype: 'F32', shape: [], data: f32(1, 7) },
    ]);
    const f = await openSafetensors(bytesSource('rt.safetensors', bytes));
    expect([...(await readTensorF32(f, 'a'))]).toEqual([...vals]);
    const h = await readTensorF32(f, 'b');
    for (let i = 0; i < vals.length; i++) expect(Math.abs(h[i] - vals[i])).toBeLessThanOrEqual(Math.abs(vals[i]) * 2 ** -11);
    const bf = await readTensorF32(f, 'c');
    for (let i = 0; i < vals.length; i++) expect(Math.abs(bf[i] - vals[i])).toBeLessThanOrEqual(Math.abs(vals[i]) * 2 ** -8);
    expect(f.tensors.get('empty')?.byteLength).toBe(0);
    expect([...(await readTensorF32(f, 'scalar'))]).toEqual([7]);
  });
});

describe('safetensors reader refuses malformed files with the file and tensor named', () => {
  const ok = { w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
  const cases: [string, () => Uint8Array, RegExp][] = [
    ['shorter than 8 bytes', () => new Uint8Array(5), /bad\.safetensors: file is 5 bytes/],
    ['header length past end of file', () => {
      const b = make(ok, 8);
      new DataView(b.buffer).setBigUint64(0, 10_000n, true);
      return b;
    }, /header length 10000 runs past the end/],
    ['huge header length', () => {
      const b = make(ok, 8);
      new DataView(b.buffer).setBigUint64(0, 200_000_000n, true);
      return b;
    }, /exceeds the limit/],
    ['bad JSON', () => make('{"w": {', 0), /header is not valid JSON/],
    ['not an object', () => make('[1,2]', 0), /does not start with "\{"/],
    ['offsets out of range', () => make({ w: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 4), /tensor "w": data_offsets \[0, 8\] run past the end/],
    ['overlapping tensors', () => make({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12), /tensor "b": data overlaps/],
    ['hole between tensors', () => make({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12), /tensor "b": hole in the data/],
    ['byte count mismatch', () => make({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), /tensor "w": holds 8 bytes but F32 \[3\] needs 12/],
    ['unsupported dtype', () => make({ w: { dtype: 'F4', shape: [2], data_offsets: [0, 1] } }, 1), /tensor "w": unsupported dtype "F4"/],
    ['trailing bytes', () => make(ok, 12), /trailing bytes/],
    ['duplicate keys', () => make('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8), /tensor "w": duplicate key/],
    ['negative shape', () => make({ w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 8), /tensor "w": shape \[-2\]/],
  ];
  for (const [label, build, msg] of cases) {
    it(label, async () => {
      const e = await openErr(build());
      expect(e.name).toBe('SafetensorsFormatError');
      expect(e.message).toMatch(msg);
    });
  }

  it('missing tensor is named', async () => {
    const f = await openSafetensors(bytesSource('m.safetensors', make(ok, 8)));
    await expect(readTensorF32(f, 'nope')).rejects.toThrow(/m\.safetensors: tensor "nope": missing tensor/);
  });
});

describe.skipIf(!hasFixture('stories260k'))('safetensors on real files', () => {
  it.skipIf(!hasFixture('stories260k'))('opens the stories260k checkpoint', async () => {
    const bytes = new Uint8Array(readFileSync(fixture('stories260k', 'model.safetensors')));
    const f = await openSafetensors(bytesSource('model.safetensors', bytes));
    const emb = f.tensors.get('model.embed_tokens.weight');
    expect(emb?.shape).toEqual([512, 64]);
    expect(emb?.dtype).toBe('F32');
  });
  it.skipIf(!hasFixture('peft-adapter-gpt2-causal'))('opens the real PEFT adapter', async () => {
    const bytes = new Uint8Array(readFileSync(fixture('peft-adapter-gpt2-causal', 'adapter_model.safetensors')));
    const f = await openSafetensors(bytesSource('adapter_model.safetensors', bytes));
    const names = [...f.tensors.keys()];
    expect(names.some((n) => /lora_A\.weight$/.test(n))).toBe(true);
  });
});
if (!hasFixture()) console.warn(SKIP_FIXTURES_MESSAGE);

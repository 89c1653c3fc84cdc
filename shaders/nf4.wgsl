// nf4.wgsl — NF4 dequantization exactly as bitsandbytes (peft-spec §4.1–4.4):
//
//   nf4_dequantize:         W[i] = NF4[code_i] · absmax[i / blocksize]                             (=)
//   nf4_dequantize_double:  W[i] = NF4[code_i] · absmax_b,   b = i / blocksize                     (=)
//                           absmax_b = code8[qabsmax[b]] · absmax2[b / nested_blocksize] + offset
//                           (double quantization, `compress_statistics=True`; nested_blocksize 256)
//
// code_i is the 4-bit code of element i: byte i/2 of the packed stream, HIGH nibble for even i, low
// nibble for odd i. Bytes arrive packed 4 per u32, little-endian: byte j is bits 8·(j%4)..8·(j%4)+7 of
// word j/4 (a plain byte upload of a checkpoint's uint8 tensor gives exactly this). qabsmax (one byte
// per block) is packed the same way. The last block may be partial; any positive blocksize works.
//
// Exactness: nf4_dequantize is one f32 multiply of two f32 values, bit-identical to bitsandbytes.
// In nf4_dequantize_double bitsandbytes rounds code8·absmax2 and then + offset separately; WGSL lets
// the compiler fuse them into one fused multiply-add, so absmax_b may differ from bitsandbytes in the
// last bit (then W[i] = NF4 · that absmax, rounded once).
//
// bindings (group 0)                      shape                          access
//   0 params                              —                              uniform Params
//   single:  1 w                          (N) f32                        rw   (=)
//            2 packed                     (ceil(N/2) bytes) u8x4         read
//            3 absmax                     (ceil(N/blocksize)) f32        read
//   double:  1 w                          (N) f32                        rw   (=)
//            2 packed                     (ceil(N/2) bytes) u8x4         read
//            3 qabsmax                    (nblocks bytes) u8x4           read
//            4 code8                      (256) f32                      read  (`nested_quant_map`)
//            5 absmax2                    (ceil(nblocks/256)) f32        read  (`nested_absmax`)
//
// One invocation per u32 word of codes (8 elements); grids larger than 65535 workgroups fold into y.

struct Params {
  n: u32,                 // elements of W
  blocksize: u32,         // NF4 block size (64 by default)
  offset: f32,            // double quantization: mean of the absmax values (`nested_offset`)
  nested_blocksize: u32,  // double quantization: 8-bit block size (256)
}

override WG: u32 = 256;

// The 16 NF4 values as f32 bit patterns (bitsandbytes get_4bit_type('nf4') / nf4_dequantization_lut).
const NF4_BITS = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u,
);

fn nf4_value(code: u32) -> f32 {
  return bitcast<f32>(NF4_BITS[code]);
}

// The 4-bit code of element e (0..7) of a word: byte e/2, high nibble first.
fn code_of(word: u32, e: u32) -> u32 {
  let shift = 8u * (e / 2u) + select(0u, 4u, e % 2u == 0u);
  return (word >> shift) & 0xfu;
}

@group(0) @binding(0) var<uniform> params: Params;

@group(0) @binding(1) var<storage, read_write> w_single: array<f32>;
@group(0) @binding(2) var<storage, read> packed_single: array<u32>;
@group(0) @binding(3) var<storage, read> absmax: array<f32>;

@compute @workgroup_size(WG)
fn nf4_dequantize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let wi = gid.x + gid.y * nwg.x * WG;  // word index: elements 8·wi .. 8·wi+7
  let first = wi * 8u;
  if (first >= params.n) { return; }
  let word = packed_single[wi];
  for (var e = 0u; e < 8u; e++) {
    let i = first + e;
    if (i >= params.n) { break; }
    w_single[i] = nf4_value(code_of(word, e)) * absmax[i / params.blocksize];
  }
}

@group(0) @binding(1) var<storage, read_write> w_double: array<f32>;
@group(0) @binding(2) var<storage, read> packed_double: array<u32>;
@group(0) @binding(3) var<storage, read> qabsmax: array<u32>;
@group(0) @binding(4) var<storage, read> code8: array<f32>;
@group(0) @binding(5) var<storage, read> absmax2: array<f32>;

// absmax of NF4 block b from its 8-bit code.
fn block_absmax(b: u32) -> f32 {
  let q = (qabsmax[b / 4u] >> (8u * (b % 4u))) & 0xffu;
  return code8[q] * absmax2[b / params.nested_blocksize] + params.offset;
}

@compute @workgroup_size(WG)
fn nf4_dequantize_double(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let wi = gid.x + gid.y * nwg.x * WG;
  let first = wi * 8u;
  if (first >= params.n) { return; }
  let word = packed_double[wi];
  var block = first / params.blocksize;
  var scale = block_absmax(block);
  for (var e = 0u; e < 8u; e++) {
    let i = first + e;
    if (i >= params.n) { break; }
    let b = i / params.blocksize;
    if (b != block) {  // the 8 elements may straddle a block edge (always when blocksize < 8)
      block = b;
      scale = block_absmax(b);
    }
    w_double[i] = nf4_value(code_of(word, e)) * scale;
  }
}

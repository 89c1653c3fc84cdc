import { describe, expect, it } from 'vitest';
import { dropoutBackward as gpuBackward, dropoutForward as gpuForward } from '../../src/kernels/dropout';
import * as ref from '../../src/ref/dropout';
import { mulHi32, philox4x32, randomU32 } from '../../src/util/rng';
import { TOL_ELEMENTWISE, expectClose } from '../helpers/compare';
import { checkGradients } from '../helpers/finite-diff';
import { download, gpu, upload } from '../helpers/gpu';
import { rng, uniform } from '../helpers/random';

// The mask must match the reference bit for bit (integer math only); values are compared with
// TOL_ELEMENTWISE (one f32 multiply by 1/(1 − p)).

const hex = (a: Uint32Array): string => [...a].map((w) => w.toString(16).padStart(8, '0')).join(' ');

describe('Philox-4x32-10 (src/util/rng.ts)', () => {
  it('matches the Random123 known-answer vectors', () => {
    expect(hex(philox4x32([0, 0, 0, 0], [0, 0]))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    const ones = 0xffffffff;
    expect(hex(philox4x32([ones, ones, ones, ones], [ones, ones]))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
    expect(hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toBe(
      'd16cfe09 94fdcceb 5001e420 24126ea1',
    );
  });

  it('mulHi32 is exact', () => {
    const r = rng(1);
    for (let i = 0; i < 2000; i++) {
      const a = Math.floor(r() * 2 ** 32);
      const b = Math.floor(r() * 2 ** 32);
      expect(mulHi32(a, b)).toBe(Number((BigInt(a) * BigInt(b)) >> 32n));
    }
    expect(mulHi32(0xffffffff, 0xffffffff)).toBe(0xfffffffe);
  });

  it('a stream read from any offset agrees with the same positions read from earlier', () => {
    const whole = randomU32(99, 2 ** 32 - 10, 40);
    expect(randomU32(99, 2 ** 32 - 3, 20)).toEqual(whole.slice(7, 27));
  });
});

describe('dropout reference', () => {
  it('backward matches finite differences (fixed mask)', () => {
    const args = { p: 0.3, seed: 5, offset: 3 };
    checkGradients({
      inputs: [uniform(50, 1)],
      forward: ([x]) => ref.dropoutForward(x, args),
      backward: (_x, dy) => [ref.dropoutBackward(dy, args)],
    });
  });
});

describe('dropout.wgsl', () => {
  // Seeds and offsets: zero, small, unaligned (offset mod 4 ≠ 0), above 2^32 and crossing the 32-bit carry.
  const streams = [
    { seed: 0, offset: 0 },
    { seed: 12345, offset: 7 },
    { seed: 0xdeadbeef, offset: 1_000_001 },
    { seed: 2 ** 40 + 3, offset: 2 ** 32 - 6 },
  ];
  for (const n of [1, 255, 1000, 70_001]) {
    for (const [si, s] of streams.entries()) {
      const p = [0.1, 0.5, 0.25, 0.9][si];
      it(`dropout_forward mask equals the reference bit for bit, n=${n} p=${p} seed=${s.seed} offset=${s.offset}`, async () => {
        const c = await gpu();
        const args = { p, ...s };
        // x = 1: out = 1/(1 − p) where kept, exactly 0 where dropped.
        const out = c.tensor([n]);
        await c.run((b) => gpuForward(b, out, upload(c, new Float64Array(n).fill(1), [n]), args));
        const got = Uint8Array.from(await c.readF32(out), (v) => (v !== 0 ? 1 : 0));
        const want = ref.dropoutMask(n, args);
        const diff = got.findIndex((m, i) => m !== want[i]);
        expect(diff, `first mask mismatch at ${diff}`).toBe(-1);
      });
    }

    it(`dropout_forward and dropout_backward match the reference values, n=${n}`, async () => {
      const c = await gpu();
      const args = { p: 0.2, seed: 77, offset: 13 };
      const x = uniform(n, 1);
      const dy = uniform(n, 2);
      const out = upload(c, uniform(n, 3), [n]); // garbage: both passes assign (=)
      const dx = upload(c, uniform(n, 4), [n]);
      await c.run((b) => {
        gpuForward(b, out, upload(c, x, [n]), args);
        gpuBackward(b, dx, upload(c, dy, [n]), args);
      });
      expectClose(await download(c, out), ref.dropoutForward(x, args), TOL_ELEMENTWISE, 'dropout_forward');
      expectClose(await download(c, dx), ref.dropoutBackward(dy, args), TOL_ELEMENTWISE, 'dropout_backward');
    });
  }

  it('keep fraction is 1 − p within 5 standard deviations (n = 70001)', async () => {
    const c = await gpu();
    const n = 70_001;
    const ones = upload(c, new Float64Array(n).fill(1), [n]);
    for (const [i, p] of [0.1, 0.5, 0.9].entries()) {
      const out = c.tensor([n]);
      await c.run((b) => gpuForward(b, out, ones, { p, seed: 1000 + i, offset: 0 }));
      const kept = (await c.readF32(out)).reduce((k, v) => k + (v !== 0 ? 1 : 0), 0);
      const sd = Math.sqrt((p * (1 - p)) / n);
      expect(Math.abs(kept / n - (1 - p)), `p=${p}: kept ${kept}/${n}`).toBeLessThan(5 * sd);
    }
  });

  it('p = 0 is the identity (bit-exact), p = 1 drops everything, NaN inputs drop to 0', async () => {
    const c = await gpu();
    const n = 1000;
    const x = uniform(n, 5);
    const xT = upload(c, x, [n]);
    const out = c.tensor([n]);
    await c.run((b) => gpuForward(b, out, xT, { p: 0, seed: 1, offset: 0 }));
    expect(await c.readF32(out)).toEqual(Float32Array.from(x));
    await c.run((b) => gpuForward(b, out, xT, { p: 1, seed: 1, offset: 0 }));
    expect([...(await c.readF32(out))].every((v) => v === 0)).toBe(true);
    const nan = upload(c, new Float64Array(n).fill(NaN), [n]);
    await c.run((b) => gpuForward(b, out, nan, { p: 0.5, seed: 2, offset: 0 }));
    const mask = ref.dropoutMask(n, { p: 0.5, seed: 2, offset: 0 });
    expect([...(await c.readF32(out))].every((v, i) => (mask[i] ? Number.isNaN(v) : v === 0))).toBe(true);
  });

  it('rejects bad arguments naming the kernel', async () => {
    const c = await gpu();
    expect(() => gpuForward(c.batch(), c.tensor([4]), c.tensor([5]), { p: 0.1, seed: 0, offset: 0 })).toThrow(/dropout_forward: x has 5 elements/);
    expect(() => gpuBackward(c.batch(), c.tensor([4]), c.tensor([4]), { p: 1.5, seed: 0, offset: 0 })).toThrow(/dropout_backward: p must be in/);
    expect(() => gpuForward(c.batch(), c.tensor([4]), c.tensor([4]), { p: 0.1, seed: -1, offset: 0 })).toThrow(/dropout_forward: seed must be/);
  });
});

// The GPU runtime itself: byte accounting, pipeline cache, typed errors, device loss.
import { afterAll, describe, expect, it } from 'vitest';
import {
  DeviceLostError,
  KernelArgumentError,
  KernelCompileError,
  KernelValidationError,
  params,
  type GpuContext,
  type KernelSpec,
} from '../../src/gpu';
import { acquireNodeContext, nodeShaderSource } from '../../src/gpu/node';
import { RESIDUAL_FORWARD, residualForward } from '../../src/kernels/residual';

const BROKEN = `
struct Params { n: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn broken_forward(@builtin(global_invocation_id) gid: vec3<u32>) {
  out[gid.x] = undefined_symbol;
}
`;

const source = (name: string): string => (name === 'broken' ? BROKEN : nodeShaderSource(name));

let ctx: GpuContext;
async function context(): Promise<GpuContext> {
  ctx ??= await acquireNodeContext({ shaderSource: source });
  return ctx;
}
afterAll(() => ctx?.destroy());

describe('GpuContext', () => {
  it('acquires the adapter with its real limits and reports it', async () => {
    const c = await context();
    expect(c.summary.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(c.limits.maxStorageBuffersPerShaderStage).toBeGreaterThanOrEqual(8);
    expect(c.adapterKey.length).toBeGreaterThan(0);
    // SwiftShader exposes subgroups and timestamp-query: both requested when present.
    for (const f of ['subgroups', 'timestamp-query']) {
      if (c.adapter.features.has(f)) expect(c.features.has(f)).toBe(true);
    }
  });

  it('accounts live and peak bytes per role', async () => {
    const c = await context();
    const before = c.memory.report();
    c.memory.resetPeak();
    const a = c.tensor([1000], { role: 'weights' });
    const b = c.tensor([250], { role: 'gradients' });
    let r = c.memory.report();
    expect(r.liveBytes - before.liveBytes).toBe(5000);
    expect(r.liveByRole.weights - before.liveByRole.weights).toBe(4000);
    expect(r.liveByRole.gradients - before.liveByRole.gradients).toBe(1000);
    c.release(a);
    r = c.memory.report();
    expect(r.liveBytes - before.liveBytes).toBe(1000);
    expect(r.peakBytes - before.liveBytes).toBeGreaterThanOrEqual(5000);
    c.release(b);
    expect(c.memory.report().liveBytes).toBe(before.liveBytes);
  });

  it('caches pipelines per kernel and variant', async () => {
    const c = await context();
    const p1 = await c.pipeline(RESIDUAL_FORWARD);
    const p2 = await c.pipeline(RESIDUAL_FORWARD);
    expect(p1).toBe(p2);
    const p3 = await c.pipeline({ ...RESIDUAL_FORWARD, constants: { WG: 64 } });
    expect(p3).not.toBe(p1);
  });

  it('turns a shader compile error into a KernelCompileError naming the kernel and line', async () => {
    const c = await context();
    const spec: KernelSpec = { shader: 'broken', entry: 'broken_forward', bindings: ['rw'] };
    const err = await c.pipeline(spec).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelCompileError);
    expect((err as Error).name).toBe('KernelCompileError');
    expect((err as Error).message).toMatch(/broken\.wgsl:broken_forward/);
    expect((err as Error).message).toMatch(/undefined_symbol|unresolved/);
  });

  it('turns a bad dispatch into a KernelValidationError naming the kernel', async () => {
    const c = await context();
    const n = 8;
    const out = c.tensor([n]);
    const batch = c.batch();
    // A workgroup count above the limit fails validation at submit time.
    batch.dispatch(RESIDUAL_FORWARD, {
      params: params().u32(n).bytes(),
      tensors: [out, c.tensor([n]), c.tensor([n])],
      grid: [c.limits.maxComputeWorkgroupsPerDimension + 1, 1, 1],
    });
    const err = await c.submit(batch).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelValidationError);
    expect((err as Error).message).toMatch(/residual\.wgsl:residual_forward/);
    // The context stays usable after a validation error.
    const a = c.tensor([n], { data: new Float32Array(n).fill(1) });
    await c.run((b) => residualForward(b, out, a, a));
    expect([...(await c.readF32(out))]).toEqual(new Array(n).fill(2));
  });

  it('rejects wrong tensor counts and released tensors on the host', async () => {
    const c = await context();
    const t = c.tensor([4]);
    c.release(t);
    expect(() => residualForward(c.batch(), t, t, t)).toThrow(KernelArgumentError);
    expect(() =>
      c.batch().dispatch(RESIDUAL_FORWARD, { params: params().u32(1).bytes(), tensors: [c.tensor([1])], grid: [1, 1, 1] }),
    ).toThrow(/expects 3 tensors, got 1/);
  });

  it('reports device loss as a typed DeviceLostError', async () => {
    const own = await acquireNodeContext();
    const t = own.tensor([4]);
    own.device.destroy();
    const lost = await own.lost;
    expect(lost).toBeInstanceOf(DeviceLostError);
    expect(lost.name).toBe('DeviceLostError');
    expect(own.isLost).toBe(true);
    await expect(own.readF32(t)).rejects.toBeInstanceOf(DeviceLostError);
    expect(() => own.tensor([4])).toThrow(DeviceLostError);
  });
});

describe('CommandBatch copies', () => {
  it('copies element ranges and checks bounds', async () => {
    const c = await context();
    const src = c.tensor([6], { data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
    const dst = c.tensor([5]);
    await c.run((b) => b.copyElements(src, 1, dst, 2, 3));
    expect([...(await c.readF32(dst))]).toEqual([0, 0, 2, 3, 4]);
    expect(() => c.batch().copyElements(src, 4, dst, 0, 3)).toThrow(/out of bounds/);
    const same = c.tensor([6]);
    await c.run((b) => b.copy(src, same));
    expect([...(await c.readF32(same))]).toEqual([1, 2, 3, 4, 5, 6]);
  });
});

// The GPU runtime: one device, its limits and features, a pipeline cache over the WGSL files in
// `shaders/`, tensors with byte accounting, command batches, read-back, and typed errors.
// Host-agnostic: the browser (src/gpu/browser.ts) and Node (src/gpu/node.ts) only differ in how the
// `GPU` object and the shader text are obtained.

import { MemoryAccountant, type MemoryReport } from './accounting';
import {
  DeviceLostError,
  GpuOutOfMemoryError,
  KernelArgumentError,
  KernelCompileError,
  KernelValidationError,
  WebGpuUnavailableError,
} from './errors';
import { bytesFor, numel, type DType, type GpuTensor, type Role } from './tensor';
import type { Grid } from './grid';

/** Returns the WGSL source of `shaders/<name>.wgsl`. */
export type ShaderSource = (name: string) => string;

/** Optional features webtune uses when the adapter has them. */
export const OPTIONAL_FEATURES: GPUFeatureName[] = ['shader-f16', 'subgroups', 'timestamp-query'];

/** What kind of storage binding a kernel declares, in binding order after the uniform at binding 0. */
export type BindingKind = 'read' | 'rw';

/**
 * A kernel = one entry point of one shader file. Binding 0 of group 0 is always the uniform
 * `params`; storage bindings follow at 1, 2, … in the order of `bindings`.
 */
export interface KernelSpec {
  readonly shader: string;
  readonly entry: string;
  readonly bindings: readonly BindingKind[];
  /** Values for the shader's `override` constants (workgroup sizes, tile sizes). */
  readonly constants?: Readonly<Record<string, number>>;
}

export function kernelName(spec: KernelSpec): string {
  return `${spec.shader}.wgsl:${spec.entry}`;
}

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  isFallbackAdapter: boolean;
  features: string[];
  limits: Record<string, number>;
}

export interface ContextOptions {
  /** Request only these optional features (default: all of OPTIONAL_FEATURES the adapter has). */
  features?: GPUFeatureName[];
  label?: string;
}

/** Limits we copy from the adapter into requestDevice (the device defaults are lower). */
const LIMIT_NAMES = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupStorageSize',
  'maxComputeWorkgroupsPerDimension',
  'maxStorageBuffersPerShaderStage',
  'maxUniformBufferBindingSize',
  'maxBindGroups',
  'minStorageBufferOffsetAlignment',
  'minUniformBufferOffsetAlignment',
] as const;

export async function acquireContext(
  gpu: GPU | undefined,
  shaderSource: ShaderSource,
  options: ContextOptions = {},
): Promise<GpuContext> {
  if (!gpu) {
    throw new WebGpuUnavailableError(
      'WebGPU is not available here. Use a recent Chrome or Edge (113+), or Safari 26+, or Firefox 141+ on Windows; ' +
        'on Linux Chrome needs chrome://flags/#enable-unsafe-webgpu and Vulkan.',
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) {
    throw new WebGpuUnavailableError(
      'WebGPU is present but no GPU adapter was found. Check that hardware acceleration is enabled and the GPU driver is installed ' +
        '(on Linux without a GPU, a Vulkan CPU driver such as SwiftShader is needed).',
    );
  }
  const wanted = options.features ?? OPTIONAL_FEATURES;
  const features = wanted.filter((f) => adapter.features.has(f));
  const requiredLimits: Record<string, number> = {};
  for (const name of LIMIT_NAMES) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === 'number') requiredLimits[name] = v;
  }
  const device = await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits,
    label: options.label ?? 'webtune',
  });
  return new GpuContext(adapter, device, shaderSource);
}

interface RecordedDispatch {
  kind: 'dispatch';
  spec: KernelSpec;
  params: Uint8Array;
  tensors: readonly GpuTensor[];
  grid: Grid;
}
interface RecordedClear {
  kind: 'clear';
  tensor: GpuTensor;
}
interface RecordedCopy {
  kind: 'copy';
  src: GpuTensor;
  dst: GpuTensor;
  /** Byte offsets within the tensors and byte count (multiples of 4). */
  srcByte: number;
  dstByte: number;
  bytes: number;
}
type Recorded = RecordedDispatch | RecordedClear | RecordedCopy;

/**
 * A list of GPU commands submitted together (one queue submission). Kernels record into a batch;
 * `ctx.submit(batch)` encodes them into one command buffer with one uniform buffer for all params.
 */
export class CommandBatch {
  readonly ops: Recorded[] = [];

  constructor(readonly ctx: GpuContext) {}

  dispatch(spec: KernelSpec, args: { params: Uint8Array; tensors: readonly GpuTensor[]; grid: Grid }): this {
    if (args.tensors.length !== spec.bindings.length) {
      throw new KernelArgumentError(
        kernelName(spec),
        `expects ${spec.bindings.length} tensors, got ${args.tensors.length}`,
      );
    }
    for (const t of args.tensors) this.ctx.assertAlive(t);
    this.ops.push({ kind: 'dispatch', spec, params: args.params, tensors: args.tensors, grid: args.grid });
    return this;
  }

  /** Fill a tensor with zeros. */
  clear(tensor: GpuTensor): this {
    this.ctx.assertAlive(tensor);
    this.ops.push({ kind: 'clear', tensor });
    return this;
  }

  copy(src: GpuTensor, dst: GpuTensor): this {
    if (src.byteLength !== dst.byteLength) {
      throw new KernelArgumentError('copy', `${src.label} has ${src.byteLength} bytes, ${dst.label} has ${dst.byteLength}`);
    }
    this.ops.push({ kind: 'copy', src, dst, srcByte: 0, dstByte: 0, bytes: Math.ceil(src.byteLength / 4) * 4 });
    return this;
  }

  /**
   * Copy `count` f32 elements from `src[srcElem…]` to `dst[dstElem…]` (e.g. new keys into a KV cache,
   * one row out of a batch). Bounds are checked on the host.
   */
  copyElements(src: GpuTensor, srcElem: number, dst: GpuTensor, dstElem: number, count: number): this {
    const bytes = count * 4;
    if (srcElem < 0 || dstElem < 0 || count < 0 || srcElem * 4 + bytes > src.byteLength || dstElem * 4 + bytes > dst.byteLength) {
      throw new KernelArgumentError(
        'copyElements',
        `copy of ${count} elements from ${src.label}[${srcElem}] to ${dst.label}[${dstElem}] is out of bounds`,
      );
    }
    if (count > 0) this.ops.push({ kind: 'copy', src, dst, srcByte: srcElem * 4, dstByte: dstElem * 4, bytes });
    return this;
  }

  kernels(): string[] {
    const names = new Set<string>();
    for (const op of this.ops) if (op.kind === 'dispatch') names.add(kernelName(op.spec));
    return [...names];
  }
}

export class GpuContext {
  readonly memory = new MemoryAccountant();
  readonly features: ReadonlySet<string>;
  readonly limits: GPUSupportedLimits;
  readonly summary: AdapterSummary;
  /** Resolves (never rejects) with the error once the device is lost. */
  readonly lost: Promise<DeviceLostError>;
  private lostError: DeviceLostError | null = null;
  private readonly modules = new Map<string, GPUShaderModule>();
  private readonly pipelines = new Map<string, Promise<{ pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }>>();
  private readonly live = new Set<GPUBuffer>();
  private uncaptured: string[] = [];
  /** Every kernel dispatched so far (name → count). Used by coverage checks and profiling. */
  readonly dispatchCounts = new Map<string, number>();

  constructor(
    readonly adapter: GPUAdapter,
    readonly device: GPUDevice,
    private readonly shaderSource: ShaderSource,
  ) {
    this.features = new Set([...device.features]);
    this.limits = device.limits;
    const info = adapter.info;
    const limits: Record<string, number> = {};
    for (const name of LIMIT_NAMES) {
      const v = (device.limits as unknown as Record<string, number>)[name];
      if (typeof v === 'number') limits[name] = v;
    }
    this.summary = {
      vendor: info?.vendor ?? '',
      architecture: info?.architecture ?? '',
      device: info?.device ?? '',
      description: info?.description ?? '',
      isFallbackAdapter: Boolean((info as GPUAdapterInfo & { isFallbackAdapter?: boolean })?.isFallbackAdapter),
      features: [...device.features].sort(),
      limits,
    };
    this.lost = device.lost.then((info) => {
      this.lostError = new DeviceLostError(info.reason ?? 'unknown', info.message ?? '');
      return this.lostError;
    });
    device.addEventListener?.('uncapturederror', (ev: Event) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.uncaptured.push(e?.message ?? String(e));
    });
  }

  /** A short stable string identifying the adapter, for caching per-adapter measurements. */
  get adapterKey(): string {
    const s = this.summary;
    return [s.vendor, s.architecture, s.device, s.description].join('|');
  }

  get isLost(): boolean {
    return this.lostError !== null;
  }

  private checkLost(): void {
    if (this.lostError) throw this.lostError;
  }

  // ---------------------------------------------------------------- tensors

  /** Allocate a tensor (zero-initialised, as WebGPU guarantees), optionally with initial data. */
  tensor(
    shape: readonly number[],
    opts: { role?: Role; label?: string; dtype?: DType; data?: ArrayBufferView } = {},
  ): GpuTensor {
    this.checkLost();
    const dtype = opts.dtype ?? 'f32';
    const label = opts.label ?? 'tensor';
    const byteLength = bytesFor(dtype, numel(shape));
    const size = Math.max(4, Math.ceil(byteLength / 4) * 4);
    const maxBinding = this.limits.maxStorageBufferBindingSize;
    if (size > maxBinding) {
      throw new GpuOutOfMemoryError(
        `allocating ${label} [${shape.join(', ')}]`,
        `${size} bytes exceeds this adapter's maxStorageBufferBindingSize (${maxBinding}); split the tensor`,
      );
    }
    this.device.pushErrorScope('out-of-memory');
    const buffer = this.device.createBuffer({
      label,
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    });
    void this.device.popErrorScope().then((err) => {
      if (err) this.uncaptured.push(`out of memory allocating ${label}: ${err.message}`);
    });
    this.memory.track(buffer, size, opts.role ?? 'scratch');
    this.live.add(buffer);
    const t: GpuTensor = { buffer, offset: 0, shape: [...shape], dtype, byteLength, label };
    if (opts.data) this.write(t, opts.data);
    return t;
  }

  /** Upload host data into a tensor (sizes must match exactly). */
  write(t: GpuTensor, data: ArrayBufferView): void {
    this.checkLost();
    if (data.byteLength !== t.byteLength) {
      throw new KernelArgumentError('write', `${t.label} holds ${t.byteLength} bytes, data has ${data.byteLength}`);
    }
    if (data.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(data.byteLength / 4) * 4);
      padded.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.device.queue.writeBuffer(t.buffer, t.offset, padded);
      return;
    }
    this.device.queue.writeBuffer(t.buffer, t.offset, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Release a tensor's buffer (only tensors that own their buffer, i.e. offset 0 allocations). */
  release(t: GpuTensor): void {
    if (!this.live.has(t.buffer)) return;
    this.live.delete(t.buffer);
    this.memory.release(t.buffer);
    t.buffer.destroy();
  }

  assertAlive(t: GpuTensor): void {
    if (!this.live.has(t.buffer)) {
      throw new KernelArgumentError('bind', `tensor ${t.label} was released or belongs to another device`);
    }
  }

  /** Copy a tensor back to the host. Waits for all previously submitted work. */
  async read(t: GpuTensor): Promise<ArrayBuffer> {
    this.checkLost();
    const size = Math.ceil(t.byteLength / 4) * 4;
    const staging = this.device.createBuffer({
      label: `readback ${t.label}`,
      size: Math.max(4, size),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.memory.track(staging, Math.max(4, size), 'io');
    try {
      const enc = this.device.createCommandEncoder({ label: `readback ${t.label}` });
      if (size > 0) enc.copyBufferToBuffer(t.buffer, t.offset, staging, 0, size);
      this.device.queue.submit([enc.finish()]);
      await Promise.race([staging.mapAsync(GPUMapMode.READ), this.lost.then((e) => Promise.reject(e))]);
      const out = staging.getMappedRange().slice(0, t.byteLength);
      staging.unmap();
      return out;
    } finally {
      this.memory.release(staging);
      staging.destroy();
    }
  }

  async readF32(t: GpuTensor): Promise<Float32Array> {
    return new Float32Array(await this.read(t));
  }

  async readU32(t: GpuTensor): Promise<Uint32Array> {
    return new Uint32Array(await this.read(t));
  }

  // ---------------------------------------------------------------- pipelines

  private module(shader: string): GPUShaderModule {
    let m = this.modules.get(shader);
    if (!m) {
      const code = this.shaderSource(shader);
      m = this.device.createShaderModule({ label: `${shader}.wgsl`, code });
      this.modules.set(shader, m);
    }
    return m;
  }

  /** Compile (once) and return the pipeline for a kernel; compile errors become KernelCompileError. */
  pipeline(spec: KernelSpec): Promise<{ pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }> {
    this.checkLost();
    const key = `${spec.shader}|${spec.entry}|${JSON.stringify(spec.constants ?? {})}|${spec.bindings.join(',')}`;
    // Cache the promise: concurrent requests for one kernel (every dispatch of a batch) compile once.
    let entry = this.pipelines.get(key);
    if (!entry) {
      entry = this.compile(spec);
      this.pipelines.set(key, entry);
      entry.catch(() => this.pipelines.delete(key));
    }
    return entry;
  }

  private async compile(spec: KernelSpec): Promise<{ pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }> {
    const name = kernelName(spec);
    this.device.pushErrorScope('validation');
    this.device.pushErrorScope('internal');
    const module = this.module(spec.shader);
    const layout = this.device.createBindGroupLayout({
      label: name,
      entries: [
        { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
        ...spec.bindings.map((kind, i) => ({
          binding: i + 1,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kind === 'read' ? ('read-only-storage' as const) : ('storage' as const) },
        })),
      ],
    });
    let pipeline: GPUComputePipeline | null = null;
    let failure = '';
    try {
      pipeline = await this.device.createComputePipelineAsync({
        label: name,
        layout: this.device.createPipelineLayout({ label: name, bindGroupLayouts: [layout] }),
        compute: { module, entryPoint: spec.entry, constants: spec.constants as Record<string, number> | undefined },
      });
    } catch (e) {
      failure = e instanceof Error ? e.message : String(e);
    }
    const internal = await this.device.popErrorScope();
    const validation = await this.device.popErrorScope();
    if (!pipeline || internal || validation) {
      const info = await module.getCompilationInfo();
      const msgs = info.messages
        .filter((m) => m.type === 'error')
        .map((m) => `${spec.shader}.wgsl:${m.lineNum}:${m.linePos}: ${m.message}`);
      throw new KernelCompileError(
        name,
        [...msgs, failure, validation?.message ?? '', internal?.message ?? ''].filter(Boolean).join('; '),
      );
    }
    return { pipeline, layout };
  }

  // ---------------------------------------------------------------- submission

  batch(): CommandBatch {
    return new CommandBatch(this);
  }

  /**
   * Encode and submit a batch as one command buffer. Resolves once the submission has been
   * validated (not when the GPU finishes; use `read` or `onDone` for that). Validation and
   * out-of-memory errors become typed errors naming the kernels in the batch.
   */
  async submit(batch: CommandBatch): Promise<void> {
    this.checkLost();
    const dispatches = batch.ops.filter((o): o is RecordedDispatch => o.kind === 'dispatch');
    const pipes: { pipeline: GPUComputePipeline; layout: GPUBindGroupLayout }[] = [];
    for (const d of dispatches) pipes.push(await this.pipeline(d.spec));
    this.checkLost();
    // One uniform buffer for the whole batch; each dispatch's params at an aligned offset.
    const align = this.limits.minUniformBufferOffsetAlignment;
    let total = 0;
    const offsets = dispatches.map((d) => {
      const o = total;
      total += Math.ceil(d.params.byteLength / align) * align;
      return o;
    });
    this.device.pushErrorScope('validation');
    this.device.pushErrorScope('out-of-memory');
    let uniform: GPUBuffer | null = null;
    if (total > 0) {
      uniform = this.device.createBuffer({
        label: 'batch params',
        size: total,
        usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
        mappedAtCreation: true,
      });
      const bytes = new Uint8Array(uniform.getMappedRange());
      dispatches.forEach((d, i) => bytes.set(d.params, offsets[i]));
      uniform.unmap();
      this.memory.track(uniform, total, 'scratch');
    }
    const enc = this.device.createCommandEncoder({ label: 'batch' });
    let pass: GPUComputePassEncoder | null = null;
    let di = 0;
    for (const op of batch.ops) {
      if (op.kind === 'dispatch') {
        const { pipeline, layout } = pipes[di];
        const name = kernelName(op.spec);
        const bind = this.device.createBindGroup({
          label: name,
          layout,
          entries: [
            { binding: 0, resource: { buffer: uniform!, offset: offsets[di], size: op.params.byteLength } },
            ...op.tensors.map((t, i) => ({
              binding: i + 1,
              resource: { buffer: t.buffer, offset: t.offset, size: Math.max(4, Math.ceil(t.byteLength / 4) * 4) },
            })),
          ],
        });
        pass ??= enc.beginComputePass({ label: 'batch' });
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bind);
        pass.dispatchWorkgroups(op.grid[0], op.grid[1], op.grid[2]);
        this.dispatchCounts.set(name, (this.dispatchCounts.get(name) ?? 0) + 1);
        di++;
      } else {
        if (pass) {
          pass.end();
          pass = null;
        }
        if (op.kind === 'clear') enc.clearBuffer(op.tensor.buffer, op.tensor.offset, Math.ceil(op.tensor.byteLength / 4) * 4);
        else enc.copyBufferToBuffer(op.src.buffer, op.src.offset + op.srcByte, op.dst.buffer, op.dst.offset + op.dstByte, op.bytes);
      }
    }
    pass?.end();
    this.device.queue.submit([enc.finish()]);
    const oom = await this.device.popErrorScope();
    const validation = await this.device.popErrorScope();
    if (uniform) {
      const u = uniform;
      void this.device.queue.onSubmittedWorkDone().then(() => {
        this.memory.release(u);
        u.destroy();
      });
    }
    if (oom) throw new GpuOutOfMemoryError(`running [${batch.kernels().join(', ')}]`, oom.message);
    if (validation) throw new KernelValidationError(batch.kernels(), validation.message);
    if (this.uncaptured.length) {
      const msgs = this.uncaptured.splice(0);
      throw new KernelValidationError(batch.kernels(), msgs.join('; '));
    }
  }

  /** Resolves when all submitted work has finished on the GPU. */
  async onDone(): Promise<void> {
    this.checkLost();
    await Promise.race([this.device.queue.onSubmittedWorkDone(), this.lost.then((e) => Promise.reject(e))]);
  }

  /** Convenience: record into a fresh batch and submit it. */
  async run(record: (b: CommandBatch) => void): Promise<void> {
    const b = this.batch();
    record(b);
    await this.submit(b);
  }

  destroy(): void {
    for (const b of this.live) b.destroy();
    this.live.clear();
    this.device.destroy();
  }
}

// Typed errors of the GPU layer. Each sets `name` so it survives a worker boundary (comlink
// serialises name + message) and says what the user can do next.

/** No WebGPU in this browser / process, or no adapter could be obtained. */
export class WebGpuUnavailableError extends Error {
  override name = 'WebGpuUnavailableError';
}

/** A shader failed to compile or a pipeline failed validation; names the kernel (shader file + entry point). */
export class KernelCompileError extends Error {
  override name = 'KernelCompileError';
  constructor(
    readonly kernel: string,
    detail: string,
  ) {
    super(`kernel ${kernel} failed to compile or validate: ${detail}`);
  }
}

/** A dispatch or submission failed validation; names the kernels that were in the submission. */
export class KernelValidationError extends Error {
  override name = 'KernelValidationError';
  constructor(
    readonly kernels: string[],
    detail: string,
  ) {
    super(`GPU validation error in [${kernels.join(', ')}]: ${detail}`);
  }
}

/** The GPU ran out of memory while allocating or running; names what was being done. */
export class GpuOutOfMemoryError extends Error {
  override name = 'GpuOutOfMemoryError';
  constructor(
    readonly what: string,
    detail: string,
  ) {
    super(
      `GPU out of memory while ${what}: ${detail}. ` +
        'Try a smaller batch or sequence length, LoRA/QLoRA instead of full fine-tuning, or close other GPU-heavy tabs.',
    );
  }
}

/** The GPU device was lost (driver reset, tab backgrounded too long, device.destroy()). */
export class DeviceLostError extends Error {
  override name = 'DeviceLostError';
  constructor(
    readonly reason: string,
    detail: string,
  ) {
    super(
      `the GPU device was lost (${reason}): ${detail || 'no detail from the driver'}. ` +
        'This usually means the graphics driver reset or the GPU was reclaimed; work resumes from the last checkpoint.',
    );
  }
}

/** A kernel was called with tensors of the wrong shape / size: names the kernel and the argument. */
export class KernelArgumentError extends Error {
  override name = 'KernelArgumentError';
  constructor(kernel: string, detail: string) {
    super(`${kernel}: ${detail}`);
  }
}

// Byte accounting for every GPU buffer webtune allocates. Live and peak bytes are queryable at any
// time, in total and per role; later layers report memory from these numbers, not from estimates.

import type { Role } from './tensor';

export interface MemoryReport {
  liveBytes: number;
  peakBytes: number;
  liveByRole: Record<Role, number>;
  peakByRole: Record<Role, number>;
  buffers: number;
}

const ROLES: Role[] = ['weights', 'trainable', 'gradients', 'optimizer', 'activations', 'scratch', 'io'];

function zeroRoles(): Record<Role, number> {
  return Object.fromEntries(ROLES.map((r) => [r, 0])) as Record<Role, number>;
}

export class MemoryAccountant {
  private live = 0;
  private peak = 0;
  private liveRole = zeroRoles();
  private peakRole = zeroRoles();
  private readonly sizes = new Map<GPUBuffer, { bytes: number; role: Role }>();

  track(buffer: GPUBuffer, bytes: number, role: Role): void {
    this.sizes.set(buffer, { bytes, role });
    this.live += bytes;
    this.liveRole[role] += bytes;
    if (this.live > this.peak) this.peak = this.live;
    if (this.liveRole[role] > this.peakRole[role]) this.peakRole[role] = this.liveRole[role];
  }

  /** Forget a buffer (called when it is destroyed). Untracked buffers are ignored. */
  release(buffer: GPUBuffer): void {
    const entry = this.sizes.get(buffer);
    if (!entry) return;
    this.sizes.delete(buffer);
    this.live -= entry.bytes;
    this.liveRole[entry.role] -= entry.bytes;
  }

  /** Start a new peak measurement window (e.g. before one training step). */
  resetPeak(): void {
    this.peak = this.live;
    this.peakRole = { ...this.liveRole };
  }

  report(): MemoryReport {
    return {
      liveBytes: this.live,
      peakBytes: this.peak,
      liveByRole: { ...this.liveRole },
      peakByRole: { ...this.peakRole },
      buffers: this.sizes.size,
    };
  }
}

// Dispatch-grid helpers. A 1-D problem larger than 65535 workgroups is folded into x and y;
// shaders recover the flat index as `gid.x + gid.y * (nwg.x * WG)` (see shaders' `flat_index`).

export const MAX_WORKGROUPS_PER_DIM = 65535;

export type Grid = [number, number, number];

/** Workgroups covering `count` items with `perGroup` items per workgroup, folded into 2-D if needed. */
export function grid1d(count: number, perGroup: number): Grid {
  const groups = Math.max(1, Math.ceil(count / perGroup));
  if (groups <= MAX_WORKGROUPS_PER_DIM) return [groups, 1, 1];
  const y = Math.ceil(groups / MAX_WORKGROUPS_PER_DIM);
  const x = Math.ceil(groups / y);
  return [x, y, 1];
}

export function ceilDiv(a: number, b: number): number {
  return Math.ceil(a / b);
}

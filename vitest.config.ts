import { defineConfig } from 'vitest/config';

// Node-side tests: float64 references, WGSL kernels on the real WebGPU adapter (Dawn via the
// `webgpu` package), and end-to-end tests that drive headless Chromium. Run through `npm test`,
// which sets the Vulkan environment before the process starts.
export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Native addon (Dawn) → separate processes, not worker threads.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default', 'json'],
    outputFile: { json: '.test-results/vitest.json' },
  },
});

import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vite';

// A static site: `vite build` → dist/, servable from any static host. Shaders are bundled from
// shaders/*.wgsl (src/gpu/browser.ts) so the browser and Node run the same files.
export default defineConfig({
  plugins: [svelte()],
  base: './',
  worker: { format: 'es' },
  build: { target: 'es2022', outDir: 'dist', emptyOutDir: true },
  server: { port: 5173, strictPort: false },
  preview: { port: 4173, strictPort: false },
});

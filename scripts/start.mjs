#!/usr/bin/env node
// `npm start`: build the static site and serve it on localhost, printing the address.
import { spawnSync } from 'node:child_process';
import { preview } from 'vite';

const build = spawnSync('node_modules/.bin/vite', ['build', '--logLevel', 'warn'], { stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
const port = Number(process.env.PORT ?? 4173);
const server = await preview({ preview: { port, host: '127.0.0.1', strictPort: false } });
const url = server.resolvedUrls?.local[0] ?? `http://127.0.0.1:${port}/`;
process.stdout.write(`\nwebtune is running at ${url}\nOpen it in Chrome/Edge (WebGPU). Press Ctrl+C to stop.\n`);

// A Hub-shaped static server for the e2e tests: /<org>/<name>/resolve/main/<file> over files in
// memory, with the CORS headers the browser needs, and a log of every request it answered. With
// `trickle`, files over 50 KB go out 16 KiB every 100 ms, so the page has time to show download progress.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HubServer {
  endpoint: string;
  requests: string[];
  close: () => Promise<void>;
}

export async function serveHub(repos: Record<string, Record<string, Uint8Array | string>>, opts: { trickle?: boolean } = {}): Promise<HubServer> {
  const requests: string[] = [];
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    requests.push(`${req.method} ${req.url}`);
    const cors = {
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Headers': 'Range, If-Range, Authorization',
      'Access-Control-Expose-Headers': 'Content-Length, Content-Range, ETag, X-Linked-Size, X-Linked-Etag, Accept-Ranges',
    };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, cors).end();
      return;
    }
    const m = /^\/([^/]+)\/([^/]+)\/resolve\/main\/(.+)$/.exec(req.url ?? '');
    const file = m ? repos[`${m[1]}/${m[2]}`]?.[decodeURIComponent(m[3])] : undefined;
    if (file === undefined) {
      res.writeHead(404, { ...cors, 'Content-Type': 'text/plain' }).end('Entry not found');
      return;
    }
    const body = typeof file === 'string' ? Buffer.from(file) : Buffer.from(file.buffer, file.byteOffset, file.byteLength);
    res.writeHead(200, { ...cors, 'Content-Length': String(body.byteLength), 'Content-Type': 'application/octet-stream' });
    if (req.method === 'HEAD' || !opts.trickle || body.byteLength <= 50_000) {
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    let o = 0;
    const step = (): void => {
      if (o >= body.byteLength) {
        res.end();
        return;
      }
      const chunk = body.subarray(o, o + 16384);
      o += chunk.byteLength;
      res.write(chunk);
      setTimeout(step, 100);
    };
    step();
  };
  const server: Server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  let closed: Promise<void> | null = null;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      (closed ??= new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      })),
  };
}

// A small HTTP proxy on loopback for the download tests: plain requests in absolute form
// ("GET http://host/path") are forwarded, CONNECT opens a tunnel. Every host name is routed to a
// loopback port by `route`, so a URL such as http://download.invalid/x can only work through the proxy.
import * as http from 'http';
import * as net from 'net';
import { AddressInfo } from 'net';

export interface ProxyRecord {
  method: string;
  /** The request target as the proxy received it: an absolute URL, or host:port for CONNECT. */
  target: string;
  /** The Proxy-Authorization header, if any. */
  auth?: string;
}

export interface LoopbackProxy {
  url: string;
  port: number;
  seen: ProxyRecord[];
  close(): Promise<void>;
}

export interface ProxyOptions {
  /** The loopback port that serves a host (name or address); undefined refuses with 502. */
  route: (host: string, port: number) => number | undefined;
  /** When set, requests without `Proxy-Authorization: Basic base64(credentials)` get 407. */
  credentials?: string;
}

export async function startLoopbackProxy(opts: ProxyOptions): Promise<LoopbackProxy> {
  const seen: ProxyRecord[] = [];
  const sockets = new Set<net.Socket>();
  const expectedAuth = opts.credentials ? `Basic ${Buffer.from(opts.credentials).toString('base64')}` : undefined;
  const allowed = (req: http.IncomingMessage): boolean => expectedAuth === undefined || req.headers['proxy-authorization'] === expectedAuth;

  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', target: req.url ?? '', auth: req.headers['proxy-authorization'] });
    if (!allowed(req)) {
      res.writeHead(407, { 'Proxy-Authenticate': 'Basic realm="test"' });
      res.end();
      return;
    }
    let target: URL;
    try {
      target = new URL(req.url ?? '');
    } catch {
      res.writeHead(400);
      res.end('absolute URL expected');
      return;
    }
    const port = opts.route(target.hostname, Number(target.port) || 80);
    if (port === undefined) {
      res.writeHead(502);
      res.end();
      return;
    }
    const upstream = http.request(
      { host: '127.0.0.1', port, method: req.method, path: `${target.pathname}${target.search}`, headers: { ...req.headers, host: target.host } },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });

  server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    seen.push({ method: 'CONNECT', target: req.url ?? '', auth: req.headers['proxy-authorization'] });
    if (!allowed(req)) {
      client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\n\r\n');
      return;
    }
    const m = /^(.+):(\d+)$/.exec(req.url ?? '');
    const port = m ? opts.route(m[1].replace(/^\[|\]$/g, ''), Number(m[2])) : undefined;
    if (port === undefined) {
      client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
      return;
    }
    const upstream = net.connect(port, '127.0.0.1', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    upstream.on('error', () => client.destroy());
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port that was free a moment ago: bound, noted, closed. */
export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/**
 * Removes the proxy settings from this test process's environment (and so from its children's), so
 * that loopback tests run the same on a machine whose shell sets a proxy.
 */
export function clearProxyVariables(): void {
  for (const name of Object.keys(process.env)) {
    if (/^(https?_proxy|all_proxy|no_proxy|npm_config_(https_)?proxy|npm_config_no_?proxy)$/i.test(name)) delete process.env[name];
  }
}

/**
 * Which HTTP(S) proxy a download goes through, read from the environment the way npm reads it.
 *
 * For an https URL: npm's `https-proxy` then `proxy` config (exported to install scripts as
 * `npm_config_https_proxy`, `npm_config_proxy`), then `HTTPS_PROXY`, `https_proxy`, `HTTP_PROXY`,
 * `http_proxy`. For an http URL: `npm_config_proxy`, `HTTP_PROXY`, `http_proxy`. A host listed in
 * `NO_PROXY`, `no_proxy` or npm's `noproxy` (`npm_config_noproxy`, `npm_config_no_proxy`) is reached
 * directly. The transport itself (CONNECT tunnels, proxy authentication) is left to
 * https-proxy-agent and http-proxy-agent.
 */
import * as http from 'http';
import * as net from 'net';
import { HttpProxyAgent } from 'http-proxy-agent';
import { HttpsProxyAgent } from 'https-proxy-agent';

/** The variables looked at, in order, for each kind of URL; named in error messages too. */
export const HTTPS_PROXY_VARIABLES = ['npm_config_https_proxy', 'npm_config_proxy', 'HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'] as const;
export const HTTP_PROXY_VARIABLES = ['npm_config_proxy', 'HTTP_PROXY', 'http_proxy'] as const;
export const NO_PROXY_VARIABLES = ['NO_PROXY', 'no_proxy', 'npm_config_noproxy', 'npm_config_no_proxy'] as const;

export interface ProxyChoice {
  /** The proxy's URL, credentials included (never print it: use `shown`). */
  url: URL;
  /** The proxy's URL without credentials, for messages. */
  shown: string;
  /** The variable it came from. */
  variable: string;
}

/** `null`, `undefined`, empty and npm's literal "null" (an unset config) all mean "not set". */
function setting(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value && value !== 'null' && value !== 'false' ? value : undefined;
}

/** The proxy URL without user name and password. */
export function withoutCredentials(url: URL): string {
  const copy = new URL(url.href);
  copy.username = '';
  copy.password = '';
  return copy.href.replace(/\/$/, '');
}

/** True when `host` (and `port`) match an entry of a NO_PROXY list. */
export function bypassesProxy(host: string, port: number, list: string): boolean {
  const hostname = host.replace(/^\[|\]$/g, '').toLowerCase();
  for (const raw of list.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    // A port, "host:port" or "[v6]:port", limits the entry to that port.
    const withPort = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(entry);
    if (withPort) {
      if (Number(withPort[2]) !== port) continue;
      entry = withPort[1];
    }
    entry = entry.replace(/^\[|\]$/g, '');
    if (entry.includes('/')) {
      // A CIDR block such as 10.0.0.0/8 matches addresses only.
      const [base, bits] = entry.split('/');
      const family = net.isIP(base);
      if (family === 0 || net.isIP(hostname) !== family || !/^\d+$/.test(bits)) continue;
      const block = new net.BlockList();
      try {
        block.addSubnet(base, Number(bits), family === 4 ? 'ipv4' : 'ipv6');
      } catch {
        continue;
      }
      if (block.check(hostname, family === 4 ? 'ipv4' : 'ipv6')) return true;
      continue;
    }
    // "example.com", ".example.com" and "*.example.com" all match example.com and its subdomains.
    const domain = entry.replace(/^\*?\./, '');
    if (hostname === domain || hostname.endsWith(`.${domain}`)) return true;
  }
  return false;
}

/** The proxy for `url`, or undefined for a direct connection. Throws on a proxy setting that is not a usable URL. */
export function proxyFor(url: URL, env: NodeJS.ProcessEnv = process.env): ProxyChoice | undefined {
  const names = url.protocol === 'https:' ? HTTPS_PROXY_VARIABLES : url.protocol === 'http:' ? HTTP_PROXY_VARIABLES : [];
  const variable = names.find((name) => setting(env, name) !== undefined);
  if (variable === undefined) return undefined;

  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  const noProxy = NO_PROXY_VARIABLES.map((name) => setting(env, name)).filter((v): v is string => v !== undefined).join(',');
  if (noProxy !== '' && bypassesProxy(url.hostname, port, noProxy)) return undefined;

  const value = setting(env, variable) as string;
  let proxy: URL;
  try {
    // "proxy.example.com:3128" without a scheme means an http:// proxy, as curl and npm read it.
    proxy = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
  } catch {
    throw new Error(`${variable} is not a proxy URL: "${value}" (expected e.g. http://proxy.example.com:3128)`);
  }
  if (proxy.protocol !== 'http:' && proxy.protocol !== 'https:') {
    throw new Error(`${variable} names a ${proxy.protocol.replace(/:$/, '')} proxy; only http:// and https:// proxies are supported`);
  }
  return { url: proxy, shown: withoutCredentials(proxy), variable };
}

/** An agent that sends a request for `target` through `proxy`: a CONNECT tunnel for https, a proxied request for http. */
export function proxyAgent(target: URL, proxy: ProxyChoice): http.Agent {
  return target.protocol === 'https:' ? new HttpsProxyAgent(proxy.url) : new HttpProxyAgent(proxy.url);
}

/** One sentence for an offline error: how to tell this package about a proxy. */
export function proxyHint(): string {
  return (
    'If this machine reaches the internet through a proxy, set HTTPS_PROXY (and HTTP_PROXY) to its URL, ' +
    "NO_PROXY for hosts to reach directly, or npm's https-proxy / proxy / noproxy config."
  );
}

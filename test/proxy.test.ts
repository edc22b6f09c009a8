// Which proxy a URL goes through, from the environment (the transport is tested in download.test.ts).
import { bypassesProxy, proxyFor, withoutCredentials } from '../lib/proxy';

const HTTPS = new URL('https://download.pytorch.org/libtorch/x.zip');
const HTTP = new URL('http://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz');

function chosen(url: URL, env: NodeJS.ProcessEnv): [string, string] | undefined {
  const p = proxyFor(url, env);
  return p && [p.variable, p.url.href];
}

describe('proxyFor', () => {
  test('no variable, no proxy', () => {
    expect(proxyFor(HTTPS, {})).toBeUndefined();
    expect(proxyFor(HTTP, { HTTPS_PROXY: 'http://p:1' })).toBeUndefined(); // an https proxy setting is not used for http
  });

  test('https URLs: npm https-proxy, npm proxy, HTTPS_PROXY, https_proxy, HTTP_PROXY, http_proxy, in that order', () => {
    const all = {
      npm_config_https_proxy: 'http://a:1',
      npm_config_proxy: 'http://b:2',
      HTTPS_PROXY: 'http://c:3',
      https_proxy: 'http://d:4',
      HTTP_PROXY: 'http://e:5',
      http_proxy: 'http://f:6',
    };
    const order = Object.keys(all) as Array<keyof typeof all>;
    for (let i = 0; i < order.length; i++) {
      const env: NodeJS.ProcessEnv = {};
      for (const name of order.slice(i)) env[name] = all[name];
      expect(chosen(HTTPS, env)).toEqual([order[i], `${all[order[i]]}/`]);
    }
  });

  test('http URLs: npm proxy, HTTP_PROXY, http_proxy', () => {
    expect(chosen(HTTP, { npm_config_proxy: 'http://b:2', HTTP_PROXY: 'http://e:5', http_proxy: 'http://f:6' })).toEqual(['npm_config_proxy', 'http://b:2/']);
    expect(chosen(HTTP, { HTTP_PROXY: 'http://e:5', http_proxy: 'http://f:6' })).toEqual(['HTTP_PROXY', 'http://e:5/']);
    expect(chosen(HTTP, { http_proxy: 'http://f:6' })).toEqual(['http_proxy', 'http://f:6/']);
  });

  test('empty values and npm\'s "null" mean unset; a bare host:port is an http:// proxy', () => {
    expect(chosen(HTTPS, { npm_config_https_proxy: 'null', npm_config_proxy: '', HTTPS_PROXY: ' proxy.corp:3128 ' })).toEqual([
      'HTTPS_PROXY',
      'http://proxy.corp:3128/',
    ]);
  });

  test('NO_PROXY, no_proxy, npm_config_noproxy and npm_config_no_proxy all exempt hosts', () => {
    for (const name of ['NO_PROXY', 'no_proxy', 'npm_config_noproxy', 'npm_config_no_proxy']) {
      expect(proxyFor(HTTPS, { HTTPS_PROXY: 'http://p:1', [name]: 'pytorch.org' })).toBeUndefined();
      expect(proxyFor(HTTP, { HTTP_PROXY: 'http://p:1', [name]: 'pytorch.org' })).toBeDefined();
    }
  });

  test('credentials are kept for the agent and left out of what is shown', () => {
    const p = proxyFor(HTTPS, { HTTPS_PROXY: 'http://user:p%40ss@proxy.corp:8080' });
    expect(p?.url.username).toBe('user');
    expect(p?.url.password).toBe('p%40ss');
    expect(p?.shown).toBe('http://proxy.corp:8080');
    expect(withoutCredentials(new URL('https://a:b@h/'))).toBe('https://h');
  });

  test('unusable settings are clear errors', () => {
    expect(() => proxyFor(HTTPS, { HTTPS_PROXY: 'socks5://p:1080' })).toThrow('HTTPS_PROXY names a socks5 proxy; only http:// and https:// proxies are supported');
    expect(() => proxyFor(HTTPS, { npm_config_https_proxy: 'http://[oops' })).toThrow(
      'npm_config_https_proxy is not a proxy URL: "http://[oops" (expected e.g. http://proxy.example.com:3128)',
    );
  });
});

describe('bypassesProxy (NO_PROXY matching)', () => {
  test.each([
    ['example.com', 443, 'example.com', true],
    ['www.example.com', 443, 'example.com', true],
    ['www.example.com', 443, '.example.com', true],
    ['www.example.com', 443, '*.example.com', true],
    ['notexample.com', 443, 'example.com', false],
    ['example.com', 443, 'example.com:443', true],
    ['example.com', 443, 'example.com:8443', false],
    ['anything.org', 80, '*', true],
    ['EXAMPLE.com', 443, 'foo, bar  example.COM', true],
    ['10.1.2.3', 80, '10.0.0.0/8', true],
    ['11.1.2.3', 80, '10.0.0.0/8', false],
    ['example.com', 80, '10.0.0.0/8', false],
    ['[::1]', 80, '::1', true],
    ['[::1]', 8080, '[::1]:8080', true],
    ['[fd00::5]', 80, 'fd00::/8', true],
    ['example.com', 443, '', false],
  ])('%s:%d against "%s" → %s', (host, port, list, expected) => {
    expect(bypassesProxy(host, port, list)).toBe(expected);
  });
});

import { describe, expect, it } from 'vitest';
import { findDestinations, type Destination } from '../src/inspect/destinations.js';
import { parseNumericHost, type NumericForm } from '../src/inspect/destinations/hosts.js';
import { classifyAddress, type DestinationReason } from '../src/inspect/destinations/ip-rules.js';
import { defaultResolver } from '../src/inspect/destinations/resolve.js';

const PUBLIC_V4 = '93.184.216.34';

/** The only DNS the table sees: anything not listed fails like NXDOMAIN, so no test reaches the network. */
const ZONE: Readonly<Record<string, string[]>> = {
  'example.com': [PUBLIC_V4],
  'api.example.com': [PUBLIC_V4],
  'evil.example': [PUBLIC_V4],
  'api.openai.com': ['104.18.7.192', '2606:4700::6812:7c0'],
  'v6.example': ['2606:2800:220:1:248:1893:25c8:1946'],
  'xn--bcher-kva.example': [PUBLIC_V4],
  '127.0.0.1.nip.io': ['127.0.0.1'],
  'rebind.example': [PUBLIC_V4, '10.0.0.5'], // mixed answers: the DNS rebinding shape
  'mapped.example': ['::ffff:169.254.169.254'],
  'garbage.example': ['not-an-ip'],
};

function fakeResolver(calls: string[] = []): (host: string) => Promise<string[]> {
  return async (host) => {
    calls.push(host);
    const answers = ZONE[host];
    if (!answers) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return answers;
  };
}

async function find(args: unknown, options: { calls?: string[]; maxDestinations?: number } = {}): Promise<Destination[]> {
  return findDestinations([{ path: 'tool.arguments', arguments: args }], {
    resolve: fakeResolver(options.calls),
    ...(options.maxDestinations === undefined ? {} : { maxDestinations: options.maxDestinations }),
  });
}

interface Row {
  /** What the table row is called in the test name. */
  readonly label: string;
  readonly args: unknown;
  /** null: the row must produce no destination at all. */
  readonly expected: { private: false } | { private: true; reason: DestinationReason; form?: NumericForm | null } | null;
}

/** A URL in a key with no special meaning: found because it parses as a URL. */
function url(text: string, expected: Row['expected']): Row {
  return { label: text, args: { q: text }, expected };
}

/** A value of a host-like key: found by the key's name, scheme or not. */
function keyed(key: string, value: string, expected: Row['expected']): Row {
  return { label: `${key}: ${value}`, args: { [key]: value }, expected };
}

const priv = (reason: DestinationReason, form?: NumericForm | null): Row['expected'] => ({ private: true, reason, ...(form === undefined ? {} : { form }) });
const pub: Row['expected'] = { private: false };

const TABLE: Row[] = [
  // Loopback, unspecified, RFC 1918, link-local, ULA, CGNAT.
  url('http://127.0.0.1/', priv('loopback', null)),
  url('http://127.255.255.254:8080/admin', priv('loopback')),
  url('http://[::1]/', priv('loopback')),
  url('http://[0:0:0:0:0:0:0:1]:8080/', priv('loopback')),
  url('http://0.0.0.0:8000/', priv('unspecified')),
  url('http://[::]/', priv('unspecified')),
  url('http://10.1.2.3/', priv('private')),
  url('http://172.16.0.1/', priv('private')),
  url('http://172.31.255.255/', priv('private')),
  url('http://192.168.1.1/', priv('private')),
  url('http://169.254.1.1/', priv('link_local')),
  url('http://[fe80::1]/', priv('link_local')),
  url('http://[fe80::1%25eth0]/', priv('link_local')),
  url('http://[fc00::1]/', priv('private')),
  url('http://[fd12:3456:789a::1]/', priv('private')),
  url('http://[fec0::1]/', priv('private')),
  url('http://100.64.0.1/', priv('cgnat')),
  url('http://100.127.255.254/', priv('cgnat')),
  // Cloud metadata, by address and by name.
  url('http://169.254.169.254/latest/meta-data/iam/security-credentials/', priv('metadata')),
  url('http://169.254.170.2/v2/credentials/abc', priv('metadata')),
  url('http://100.100.100.200/latest/meta-data/', priv('metadata')),
  url('http://168.63.129.16/machine?comp=goalstate', priv('metadata')),
  url('http://[fd00:ec2::254]/latest/meta-data/', priv('metadata')),
  url('http://metadata.google.internal/computeMetadata/v1/', priv('metadata')),
  url('http://metadata.goog/computeMetadata/v1/', priv('metadata')),
  url('http://instance-data/latest/', priv('metadata')),
  keyed('host', 'metadata', priv('metadata')),
  // IPv6 forms that carry a private IPv4 address.
  url('http://[::ffff:127.0.0.1]/', priv('loopback', 'ipv4_mapped')),
  url('http://[::ffff:7f00:1]/', priv('loopback', 'ipv4_mapped')),
  url('http://[::ffff:a9fe:a9fe]/', priv('metadata', 'ipv4_mapped')),
  url('http://[::ffff:0:10.0.0.1]/', priv('private', 'ipv4_translated')),
  url('http://[::127.0.0.1]/', priv('loopback', 'ipv4_compatible')),
  url('http://[::8.8.8.8]/', priv('ipv4_compatible', 'ipv4_compatible')),
  url('http://[64:ff9b::10.0.0.1]/', priv('private', 'nat64')),
  url('http://[64:ff9b::a9fe:a9fe]/', priv('metadata', 'nat64')),
  url('http://[64:ff9b:1::a00:1]/', priv('nat64')),
  url('http://[2002:c0a8:101::1]/', priv('private', '6to4')),
  url('http://[2002:7f00:1::]/', priv('loopback', '6to4')),
  url('http://[2001:0:4136:e378:8000:63bf:80ff:fefe]/', priv('loopback', 'teredo')),
  // Multicast, broadcast, benchmarking, reserved, documentation.
  url('http://224.0.0.1/', priv('multicast')),
  url('http://239.255.255.250:1900/', priv('multicast')),
  url('http://[ff02::1]/', priv('multicast')),
  url('http://255.255.255.255/', priv('broadcast')),
  url('http://198.18.0.1/', priv('benchmarking')),
  url('http://198.19.255.254/', priv('benchmarking')),
  url('http://[2001:2::1]/', priv('benchmarking')),
  url('http://192.0.0.8/', priv('reserved')),
  url('http://240.0.0.1/', priv('reserved')),
  url('http://[100::1]/', priv('reserved')),
  url('http://192.0.2.10/', priv('documentation')),
  url('http://198.51.100.7/', priv('documentation')),
  url('http://203.0.113.9/', priv('documentation')),
  url('http://[2001:db8::1]/', priv('documentation')),
  // Names.
  url('http://localhost:3000/', priv('loopback')),
  url('http://localhost.:3000/', priv('loopback')),
  url('http://api.localhost/', priv('loopback')),
  url('HTTP://LOCALHOST/', priv('loopback')),
  url('http://ⓛocalhost/', priv('loopback')),
  url('http://redis.internal:6379/', priv('internal_name')),
  url('http://printer.local/', priv('internal_name')),
  url('http://router.home.arpa/', priv('internal_name')),
  keyed('hostname', 'db', priv('internal_name')),
  url('http://127.0.0.1.nip.io/', priv('loopback')),
  url('http://rebind.example/', priv('private')),
  url('http://mapped.example/', priv('metadata')),
  url('http://garbage.example/', priv('invalid_address')),
  url('http://does-not-exist.example/', priv('unresolvable')),
  // Non-canonical numeric IPv4 (new URL() canonicalises them; the form comes from the text).
  url('http://2130706433/', priv('loopback', 'decimal')),
  url('http://0x7f000001/', priv('loopback', 'hex')),
  url('http://0x7F.0x0.0x0.0x1/', priv('loopback', 'hex')),
  url('http://0177.0.0.1/', priv('loopback', 'octal')),
  url('http://017700000001/', priv('loopback', 'octal')),
  url('http://127.1/', priv('loopback', 'short')),
  url('http://10.1/', priv('private', 'short')),
  url('http://0x7f.1/', priv('loopback', 'mixed')),
  url('http://0xa9.254.0251.0376/', priv('metadata', 'mixed')),
  url('http://0/', priv('unspecified', 'decimal')),
  url('http://127.0.0.1./', priv('loopback', null)),
  url('http://１２７.０.０.１/', priv('loopback')),
  url('http://%31%32%37.0.0.1/', priv('loopback')),
  // URL tricks.
  url('http://evil@127.0.0.1/', priv('loopback')),
  url('http://user:pass@169.254.169.254/', priv('metadata')),
  url('http://127.0.0.1#@evil.example/', priv('loopback')),
  url('http://127.0.0.1:80\\@evil.example/', priv('loopback')),
  url('http://evil.example\\@127.0.0.1/', priv('loopback')),
  url('http:\\\\127.0.0.1\\admin', priv('loopback')),
  url('http:/\\127.0.0.1/', priv('loopback')),
  url('http:127.0.0.1/', priv('loopback')),
  url('HtTpS://10.0.0.1/', priv('private')),
  url('https://example.com/login?next=http://127.0.0.1/admin', priv('loopback')),
  url('https://example.com/r?u=http%3A%2F%2F169.254.169.254%2Flatest', priv('metadata')),
  // Other schemes a tool may speak.
  url('gopher://127.1:6379/_INFO', priv('loopback', 'short')),
  url('gopher://%31%32%37.0.0.1:70/', priv('loopback')),
  url('dict://10.0.0.1:11211/stat', priv('private')),
  url('ws://10.0.0.1:8080/socket', priv('private')),
  url('ftp://192.168.0.10/pub', priv('private')),
  url('file:///etc/passwd', priv('local_file')),
  url('file://localhost/etc/shadow', priv('local_file')),
  url('redis://10.0.0.9:6379/0', priv('private')),
  // Host-like keys without a scheme.
  keyed('host', '10.0.0.1:6379', priv('private')),
  keyed('host', 'localhost', priv('loopback')),
  keyed('hostname', '127.1', priv('loopback', 'short')),
  keyed('address', '::1', priv('loopback')),
  keyed('server', 'fe80::1%eth0', priv('link_local')),
  keyed('endpoint', 'redis.internal:6379', priv('internal_name')),
  keyed('base_url', '//169.254.169.254/latest', priv('metadata')),
  keyed('ip', '0x0a000001', priv('private', 'hex')),
  keyed('webhookUrl', '192.168.1.20/hook', priv('private')),
  keyed('domain', 'intranet', priv('internal_name')),
  keyed('uri', 'http://[::ffff:7f00:1]:9200/_cat', priv('loopback', 'ipv4_mapped')),
  // Free text (a shell tool's command) and JSON-in-a-string (OpenAI function.arguments).
  { label: 'curl in a command', args: { command: 'curl -s http://169.254.169.254/latest/meta-data/ | head' }, expected: priv('metadata') },
  { label: 'JSON string arguments', args: '{"url":"http://10.0.0.1/admin"}', expected: priv('private') },
  // Public destinations that must not be flagged.
  url('https://example.com/', pub),
  url('https://api.openai.com/v1/chat/completions', pub),
  url('http://93.184.216.34/', pub),
  url('https://8.8.8.8/dns-query', pub),
  url('http://[2606:4700:4700::1111]/', pub),
  url('https://v6.example/', pub),
  url('https://bücher.example/', pub),
  url('http://134744072/', pub),
  url('http://[::ffff:8.8.8.8]/', pub),
  url('http://[64:ff9b::808:808]/', pub),
  url('http://[2002:808:808::1]/', pub),
  url('http://172.32.0.1/', pub),
  url('http://172.15.255.255/', pub),
  url('http://100.128.0.1/', pub),
  url('http://100.63.255.255/', pub),
  url('http://169.255.0.1/', pub),
  url('http://192.169.0.1/', pub),
  url('http://11.0.0.1/', pub),
  url('http://198.20.0.1/', pub),
  url('http://223.255.255.254/', pub),
  url('https://user:secret@example.com:8443/path?token=x#frag', pub),
  keyed('host', 'example.com', pub),
  keyed('host', 'example.com:443', pub),
  keyed('server_url', 'https://api.example.com/v1', pub),
  { label: 'a sentence with a public URL', args: { text: 'See https://example.com/docs, then reply.' }, expected: pub },
  // Nothing to find.
  { label: 'plain text', args: { query: 'what is the weather in Paris?' }, expected: null },
  { label: 'a postal address', args: { address: '1 Main Street, Springfield' }, expected: null },
  { label: 'a scheme that is not a network destination', args: { link: 'mailto:someone@example.com' }, expected: null },
  { label: 'numbers and booleans', args: { count: 3, enabled: true, items: [1, 2, null] }, expected: null },
];

describe('findDestinations: the URL and host table', () => {
  it('has at least 50 rows, private and public', () => {
    expect(TABLE.length).toBeGreaterThanOrEqual(50);
    expect(TABLE.filter((row) => row.expected?.private === false).length).toBeGreaterThanOrEqual(20);
  });

  it.each(TABLE.map((row) => [row.label, row] as const))('%s', async (_label, row) => {
    const found = await find(row.args);
    if (row.expected === null) {
      expect(found).toEqual([]);
      return;
    }
    expect(found.length).toBeGreaterThan(0);
    if (!row.expected.private) {
      expect(found.filter((d) => d.private)).toEqual([]);
      for (const d of found) expect(d.reason).toBeNull();
      return;
    }
    const expected = row.expected;
    const match = found.find((d) => d.private && d.reason === expected.reason);
    expect(match, JSON.stringify(found)).toBeDefined();
    if (expected.form !== undefined) expect(match?.numeric_form).toBe(expected.form);
  });
});

describe('findDestinations: what each destination says', () => {
  it('reports path, a URL without userinfo, query or fragment, the canonical host, port and addresses', async () => {
    const [d] = await find({ request: { target: 'https://user:secret@API.Example.com.:8443/v1/x?token=abc#frag' } });
    expect(d).toEqual({
      path: 'tool.arguments.request.target',
      url: 'https://api.example.com.:8443/v1/x',
      host: 'api.example.com',
      port: 8443,
      addresses: [PUBLIC_V4],
      private: false,
      reason: null,
      numeric_form: null,
    });
    expect(JSON.stringify(d)).not.toMatch(/secret|token|abc/);
  });

  it('defaults the port from the scheme and leaves it null for a bare host', async () => {
    const found = await find({ a: 'http://example.com/', b: 'wss://example.com/', host: 'example.com', c: 'gopher://example.com/' });
    expect(found.map((d) => [d.path, d.port])).toEqual([
      ['tool.arguments.a', 80],
      ['tool.arguments.b', 443],
      ['tool.arguments.host', null],
      ['tool.arguments.c', null],
    ]);
  });

  it('walks arrays and nested objects, quoting keys that are not identifiers, and parses JSON strings', async () => {
    const found = await findDestinations(
      [
        { path: 'body.tool_calls[0].function.arguments', arguments: JSON.stringify({ urls: ['https://example.com/', 'http://10.0.0.1/'] }) },
        { path: 'body.params.arguments', arguments: { 'target-host': { 'x y': 'http://192.168.0.1/' } } },
      ],
      { resolve: fakeResolver() },
    );
    expect(found.map((d) => [d.path, d.host, d.private])).toEqual([
      ['body.tool_calls[0].function.arguments.urls[0]', 'example.com', false],
      ['body.tool_calls[0].function.arguments.urls[1]', '10.0.0.1', true],
      ['body.params.arguments["target-host"]["x y"]', '192.168.0.1', true],
    ]);
  });

  it('marks a name private when ANY of its addresses is private, and lists them all', async () => {
    const [d] = await find({ url: 'http://rebind.example/' });
    expect(d).toMatchObject({ private: true, reason: 'private', addresses: [PUBLIC_V4, '10.0.0.5'] });
  });

  it('reports the most severe reason when answers are private for different reasons', async () => {
    const found = await findDestinations([{ path: 'p', arguments: { url: 'http://multi.example/' } }], {
      resolve: async () => ['10.0.0.1', '169.254.169.254', '127.0.0.1'],
    });
    expect(found[0]).toMatchObject({ private: true, reason: 'metadata' });
  });

  it('checks both readings of a URL that parsers disagree on', async () => {
    const found = await find({ q: 'http://evil.example\\@127.0.0.1/' });
    expect(found.map((d) => [d.host, d.private])).toEqual([
      ['evil.example', false],
      ['127.0.0.1', true],
    ]);
  });

  it('looks up each distinct name once, never a numeric host or a special name', async () => {
    const calls: string[] = [];
    await find(
      { a: 'https://example.com/1', b: 'https://example.com/2', c: 'http://10.0.0.1/', d: 'http://localhost/', e: 'http://metadata.google.internal/', host: 'example.com' },
      { calls },
    );
    expect(calls).toEqual(['example.com']);
  });

  it('treats a lookup slower than timeoutMs as unresolvable (private)', async () => {
    const found = await findDestinations([{ path: 'p', arguments: { url: 'https://slow.example/' } }], {
      resolve: () => new Promise<string[]>(() => undefined),
      timeoutMs: 20,
    });
    expect(found[0]).toMatchObject({ host: 'slow.example', private: true, reason: 'unresolvable', addresses: [] });
  });

  it('treats an empty answer as unresolvable', async () => {
    const found = await findDestinations([{ path: 'p', arguments: { url: 'https://empty.example/' } }], { resolve: async () => [] });
    expect(found[0]).toMatchObject({ private: true, reason: 'unresolvable' });
  });

  it('looks up at most maxDestinations names; the rest are limit_exceeded, literals are still classified', async () => {
    const calls: string[] = [];
    const found = await find(
      { urls: ['https://example.com/', 'https://api.example.com/', 'https://evil.example/', 'http://8.8.8.8/', 'http://10.0.0.1/'] },
      { calls, maxDestinations: 2 },
    );
    expect(calls).toEqual(['example.com', 'api.example.com']);
    expect(found.map((d) => [d.host, d.reason])).toEqual([
      ['example.com', null],
      ['api.example.com', null],
      ['evil.example', 'limit_exceeded'],
      ['8.8.8.8', null],
      ['10.0.0.1', 'private'],
    ]);
    expect(found[2]?.private).toBe(true);
  });

  it('reports the same URL found at two paths twice, and once per path', async () => {
    const found = await find({ a: 'http://10.0.0.1/', b: ['http://10.0.0.1/', 'http://10.0.0.1/'] });
    expect(found.map((d) => d.path)).toEqual(['tool.arguments.a', 'tool.arguments.b[0]', 'tool.arguments.b[1]']);
  });
});

describe('parseNumericHost', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1', 'dotted'],
    ['127.0.0.1.', '127.0.0.1', 'dotted'],
    ['2130706433', '127.0.0.1', 'decimal'],
    ['0x7f000001', '127.0.0.1', 'hex'],
    ['0X7F000001', '127.0.0.1', 'hex'],
    ['0177.0.0.1', '127.0.0.1', 'octal'],
    ['127.1', '127.0.0.1', 'short'],
    ['127.0.1', '127.0.0.1', 'short'],
    ['0x7f.1', '127.0.0.1', 'mixed'],
    ['0x7f.0.0.01', '127.0.0.1', 'mixed'],
    ['0', '0.0.0.0', 'decimal'],
    ['%31%32%37.1', '127.0.0.1', 'short'],
    ['１２７。０。０。１', '127.0.0.1', 'dotted'],
    ['[::ffff:127.0.0.1]', '127.0.0.1', 'ipv4_mapped'],
    ['[::ffff:7f00:1]', '127.0.0.1', 'ipv4_mapped'],
    ['::FFFF:7F00:1', '127.0.0.1', 'ipv4_mapped'],
    ['[64:ff9b::7f00:1]', '64:ff9b::7f00:1', 'nat64'],
    ['[2002:7f00:1::]', '2002:7f00:1::', '6to4'],
    ['[0:0:0:0:0:0:0:1]', '::1', 'ipv6'],
    ['[FE80::1%25eth0]', 'fe80::1', 'ipv6'],
  ])('%s → %s (%s)', (host, ip, form) => {
    expect(parseNumericHost(host)).toEqual({ ip, form });
  });

  it.each(['example.com', 'localhost', '1.2.3.256', '256.0.0.1', '08.0.0.1', '1.2.3.4.5', '0xfg.1', '4294967296', '[not:an:ip]', ''])(
    '%s is not a numeric host',
    (host) => {
      expect(parseNumericHost(host)).toBeUndefined();
    },
  );
});

describe('classifyAddress', () => {
  it.each([
    ['127.0.0.1', true, 'loopback'],
    ['::1', true, 'loopback'],
    ['[::1]', true, 'loopback'],
    ['0.0.0.0', true, 'unspecified'],
    ['10.255.255.255', true, 'private'],
    ['169.254.169.254', true, 'metadata'],
    ['169.254.170.23', true, 'metadata'],
    ['fd00:ec2::23', true, 'metadata'],
    ['fe80::1%lo0', true, 'link_local'],
    ['febf::1', true, 'link_local'],
    ['::ffff:192.168.0.1', true, 'private'],
    ['5f00::1', true, 'reserved'],
    ['8.8.8.8', false, null],
    ['2606:4700:4700::1001', false, null],
    ['1.1.1.1', false, null],
    ['not an ip', true, 'invalid_address'],
    ['2130706433', true, 'invalid_address'],
  ])('%s → private %s (%s)', (ip, isPrivate, reason) => {
    expect(classifyAddress(ip)).toEqual({ private: isPrivate, reason });
  });
});

describe('defaultResolver', () => {
  it('resolves localhost through the system resolver to loopback addresses only', async () => {
    const addresses = await defaultResolver('localhost');
    expect(addresses.length).toBeGreaterThan(0);
    for (const address of addresses) expect(classifyAddress(address)).toEqual({ private: true, reason: 'loopback' });
  });
});

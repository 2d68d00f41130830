import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { clearRememberedFindings, detect, detectRemembered, FINDING_TYPES, type DetectOptions, type FindingType } from '../src/inspect/content/detectors.js';
import { CorpusError, evaluateCorpus, parseCorpus } from '../src/inspect/content/evaluate.js';
import { redactBody, redactText } from '../src/inspect/content/redact.js';
import { scanBody, type Finding } from '../src/inspect/content/scan.js';

const CORPUS = join(import.meta.dirname, 'fixtures', 'content-corpus.jsonl');

const types = (text: string, options?: DetectOptions): FindingType[] => detect(text, options).map((m) => m.type);
const found = (text: string): string[] => detect(text).map((m) => `${m.type}:${text.slice(m.start, m.end)}`);

/**
 * Secret-shaped strings are built at run time from a fixed seed, so this file holds no literal
 * that looks like a credential to a secret scanner, and the values are random, not anyone's.
 */
let seed = 12345;
function fake(alphabet: string, n: number): string {
  let out = '';
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    out += alphabet[seed % alphabet.length];
  }
  return out;
}
const UP = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const LO = 'abcdefghijklmnopqrstuvwxyz';
const DIG = '0123456789';
const ALNUM = `${UP}${LO}${DIG}`;
const HEX = '0123456789abcdef';
/** Mixed case and digits, like a real random token. */
const token = (n: number, alphabet = ALNUM): string => `Ab3${fake(alphabet, n - 3)}`;
const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
const join_ = (...parts: string[]): string => parts.join('');

describe('detect: email', () => {
  it.each([
    ['Send it to jane.doe@example.com by Friday', 'jane.doe@example.com'],
    ['From: Support <help+billing@mail.example.co.uk>', 'help+billing@mail.example.co.uk'],
    ['first_last@example.org.', 'first_last@example.org'],
    ['mailto:ops@example.net?subject=hi', 'ops@example.net'],
  ])('finds %j', (text, value) => {
    expect(found(text)).toEqual([`email:${value}`]);
  });

  it.each([
    'user@localhost',
    'npm install lodash@4.17.21',
    'pnpm add @types/node@20.11.5',
    'icon@2x.png',
    'git clone git@github.com:acme/api.git',
    'https://admin:pw@example.com/x',
    'a@b.c',
    '@jane_doe',
    'docker pull nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31',
  ])('ignores %j', (text) => {
    expect(types(text)).toEqual([]);
  });
});

describe('detect: phone', () => {
  it.each([
    ['Call (415) 555-0132', '(415) 555-0132'],
    ['415-555-0132', '415-555-0132'],
    ['415.555.0132', '415.555.0132'],
    ['1-800-555-0199', '1-800-555-0199'],
    ['+1 (415) 555-0132', '+1 (415) 555-0132'],
    ['+44 20 7946 0958', '+44 20 7946 0958'],
    ['(+44) 20 7946 0958', '(+44) 20 7946 0958'],
    ['tel:+14155550132', '+14155550132'],
    ['+49 (0)30 12345678', '+49 (0)30 12345678'],
    ['Phone: 2125550143', '2125550143'],
    ['Call me on 07700 900123', '07700 900123'],
    ['Call 555-0142 from the lobby', '555-0142'],
  ])('finds %j', (text, value) => {
    expect(found(text)).toEqual([`phone:${value}`]);
  });

  it.each([
    '2024-03-15',
    '03/15/1987',
    '10:30:45',
    '2024-03-15T10:30:00+01:00',
    'v2.14.3',
    '192.168.101.203',
    '2001:db8::ff00:42:8329',
    'Order 415-555-0142 has shipped',
    'Invoice no. 212-555-0147',
    'Order number 41555526710042',
    '4155550132',
    'Coordinates +37.774929 -122.419416',
    'Growth +1.5%',
    'UTC+05:30',
    'ZIP 94105-1234',
    'The function call took 555.1234 ms',
  ])('ignores %j', (text) => {
    expect(types(text)).toEqual([]);
  });
});

describe('detect: US SSN', () => {
  it.each(['SSN 512-34-5678', 'ssn: 512 34 5678', 'social security number 512345678', 'Applicant 512-34-5678'])('finds %j', (text) => {
    expect(types(text)).toEqual(['us_ssn']);
  });

  it('needs an SSN word for 9 bare digits, from the text or the member name', () => {
    expect(types('512345678')).toEqual([]);
    expect(types('512345678', { context: 'ssn' })).toEqual(['us_ssn']);
    expect(types('512345678', { context: 'employeeSsn' })).toEqual(['us_ssn']);
  });

  it.each([
    ['000-12-3456', 'area 000'],
    ['666-12-3456', 'area 666'],
    ['912-34-5678', 'area 900-999'],
    ['512-00-5678', 'group 00'],
    ['512-34-0000', 'serial 0000'],
    ['078-05-1120', 'the Woolworth wallet card'],
    ['219-09-9999', 'SSA advertising sample'],
    ['123-45-6789', 'the universal placeholder'],
    ['Invoice 512-34-5678', 'an identifier word before it'],
    ['512-34-5678-rc1', 'part of a longer identifier'],
  ])('rejects %j (%s)', (text) => {
    expect(types(text)).toEqual([]);
  });
});

describe('detect: payment card', () => {
  it.each([
    '4111 1111 1111 1111',
    '4242-4242-4242-4242',
    '5555 5555 5555 4444',
    '2223 0031 2200 3222',
    '3782 822463 10005',
    '3056 930902 5904',
    '6011 1111 1111 1117',
    '3530 1113 3330 0000',
    '6200 0000 0000 0005',
  ])('finds the grouped test number %j without context', (text) => {
    expect(found(text)).toEqual([`payment_card:${text}`]);
  });

  it('needs a card word for a contiguous run, in the text or the member name', () => {
    expect(types('4111111111111111')).toEqual([]);
    expect(types('Order 4111111111111111 shipped')).toEqual([]);
    expect(types('visa 4111111111111111')).toEqual(['payment_card']);
    expect(types('4111111111111111 exp 12/27')).toEqual(['payment_card']);
    expect(types('4111111111111111', { context: 'cardNumber' })).toEqual(['payment_card']);
  });

  it.each([
    ['my card 3782 8224 6310 005', '3782 8224 6310 005'],
    ['card no. 3782-8224-6310-005', '3782-8224-6310-005'],
    ['visa 4222 2222 2222 2', '4222 2222 2222 2'],
    ['Diners card 3056 9309 0259 04', '3056 9309 0259 04'],
  ])('finds %j, typed in fours whatever the issuer prints, next to a card word', (text, card) => {
    expect(found(text)).toEqual([`payment_card:${card}`]);
  });

  it('needs a card word for a number typed in fours that no issuer prints, in the text or the member name', () => {
    expect(types('3782 8224 6310 005')).toEqual([]);
    expect(types('Order 3782 8224 6310 005 shipped')).toEqual([]);
    expect(types('Reference 4222-2222-2222-2')).toEqual([]);
    expect(types('3782 8224 6310 005', { context: 'cardNumber' })).toEqual(['payment_card']);
  });

  it.each([
    ['card 3782 8224 6310 006', 'typed in fours, Luhn fails'],
    ['Discover card 6011 9043 7755 103', 'Discover is never 15 digits'],
    ['card 3782 8224 6310 005 1234', 'a fifth 4-digit group: longer identifier'],
    ['card 3782-8224 6310-005', 'mixed separators'],
    ['card hotline (0) 4012 8830 1729 6', 'a phone number with a trunk prefix'],
  ])('rejects %j (%s)', (text) => {
    expect(types(text)).toEqual([]);
  });

  it('leaves a phone number typed in fours after a country code to the phone detector, even next to a card word', () => {
    expect(types('Card services hotline +49 4012 8830 1729 6')).toEqual(['phone']);
  });

  it.each([
    ['card 4111 1111 1111 1112', 'Luhn fails'],
    ['visa 4111111111111112', 'Luhn fails'],
    ['card 4111 111111 111111', 'not a card grouping'],
    ['card 9111 1111 1111 1115', 'no issuer'],
    ['visa 41111111111113', 'Visa is never 14 digits'],
    ['Amounts 4111 1111 1111 1111 1111', 'five 4-digit groups: a table row'],
    ['IBAN DE80 2516 2210 1578 9840 33', 'the digits of an IBAN with a bad checksum'],
    ['USPS 9400 1000 0000 0000 0000 00', 'tracking number'],
    ['ts 1710498600000', 'millisecond timestamp'],
    ['card 4111 1111 1111 1111 2222 3333', 'longer identifier'],
    ['card 4111-1111 1111-1111', 'mixed separators: not one number'],
    ['4111 1111-1111 1111', 'mixed separators: not one number'],
  ])('rejects %j (%s)', (text) => {
    expect(types(text)).toEqual([]);
  });

  it('finds the card among other numbers', () => {
    expect(found('Qty 2 4111 1111 1111 1111 12/27 123')).toEqual(['payment_card:4111 1111 1111 1111']);
  });
});

describe('detect: IBAN', () => {
  it.each(['DE89 3704 0044 0532 0130 00', 'DE89370400440532013000', 'GB82 WEST 1234 5698 7654 32', 'FR14 2004 1010 0505 0001 3M02 606', 'NO93 8601 1117 947', 'CH93 0076 2011 6238 5295 7'])(
    'finds %j, and nothing inside it',
    (text) => {
      expect(found(`IBAN: ${text}.`)).toEqual([`iban:${text}`]);
    },
  );

  it.each([
    ['DE88 3704 0044 0532 0130 00', 'check digits'],
    ['GB82 WEST 1234 5698 7654 33', 'check digits'],
    ['DE89 3704 0044 0532 0130 0', 'too short for DE'],
    ['DE89 3704 0044 0532 0130 001', 'too long for DE'],
    ['XX89 3704 0044 0532 0130 00', 'unknown country'],
    ['GB82 1234 1234 5698 7654 32', 'GB BBAN starts with four letters'],
  ])('rejects %j (%s)', (text) => {
    expect(types(text)).not.toContain('iban');
  });
});

describe('detect: secrets', () => {
  const jwt = join_(b64url({ alg: 'RS256', typ: 'JWT' }), '.', b64url({ sub: 'u1', iat: 1 }), '.', fake(`${ALNUM}-_`, 43));
  const pem = (label: string): string =>
    join_('-----BEGIN ', label, 'PRIVATE KEY-----\n', fake(ALNUM, 64), '\n', fake(ALNUM, 40), '==\n-----END ', label, 'PRIVATE KEY-----');
  const positives: [FindingType, string][] = [
    ['secret.aws_access_key', join_('AK', 'IA', fake(`${UP}234567`, 16))],
    ['secret.aws_access_key', join_('AS', 'IA', fake(`${UP}234567`, 16))],
    ['secret.aws_secret_key', `aws_secret_access_key = ${token(40, `${ALNUM}/+`)}`],
    ['secret.private_key', pem('RSA ')],
    ['secret.private_key', pem('')],
    ['secret.private_key', pem('OPENSSH ')],
    ['secret.github_token', join_('gh', 'p_', fake(ALNUM, 36))],
    ['secret.github_token', join_('github', '_pat_', fake(ALNUM, 22), '_', fake(ALNUM, 59))],
    ['secret.gitlab_token', join_('gl', 'pat-', fake(ALNUM, 20))],
    ['secret.openai_key', join_('sk', '-', token(48))],
    ['secret.openai_key', join_('sk', '-proj-', token(156, `${ALNUM}-_`))],
    ['secret.anthropic_key', join_('sk', '-ant-api03-', token(93, `${ALNUM}-_`), 'AA')],
    ['secret.slack_token', join_('xo', 'xb-', fake(DIG, 11), '-', fake(DIG, 12), '-', fake(ALNUM, 24))],
    ['secret.slack_webhook', join_('https://hooks.', 'slack.com/services/T', fake(UP, 8), '/B', fake(UP, 10), '/', fake(ALNUM, 24))],
    ['secret.stripe_key', join_('sk', '_live_', fake(ALNUM, 24))],
    ['secret.stripe_key', join_('rk', '_live_', fake(ALNUM, 99))],
    ['secret.google_api_key', join_('AI', 'za', fake(`${ALNUM}-_`, 35))],
    ['secret.jwt', jwt],
    ['secret.npm_token', join_('np', 'm_', fake(ALNUM, 36))],
    ['secret.azure_storage_key', `AccountName=acme;AccountKey=${token(86, `${ALNUM}+/`)}==;EndpointSuffix=core.windows.net`],
    ['secret.huggingface_token', join_('hf', '_', 'Ab', fake(UP + LO, 32))],
    ['secret.sendgrid_key', join_('SG', '.', fake(ALNUM, 22), '.', fake(ALNUM, 43))],
    ['secret.pypi_token', join_('pypi', '-AgEIcHlwaS5vcmc', fake(ALNUM, 160))],
    ['secret.digitalocean_token', join_('dop', '_v1_', fake(HEX, 64))],
    ['secret.shopify_token', join_('shp', 'at_', fake(HEX, 32))],
  ];

  it.each(positives)('finds %s', (type, text) => {
    expect(types(`value: ${text} end`)).toEqual([type]);
  });

  it('covers every secret type', () => {
    const covered = new Set(positives.map(([type]) => type));
    expect(FINDING_TYPES.filter((t) => t.startsWith('secret.') && !covered.has(t))).toEqual([]);
  });

  it.each([
    ['sk-1234', 'too short'],
    ['pip install sk-learn', 'a package name'],
    ['sk-this-is-not-a-real-key-just-a-long-css-class-name', 'no digits or capitals'],
    [join_('sk', '_test_', fake(ALNUM, 24)), 'a test-mode key'],
    [join_('pk', '_live_', fake(ALNUM, 24)), 'a publishable key'],
    [join_('AK', 'IA1234'), 'too short'],
    [join_('AI', 'DA', fake(UP, 16)), 'an IAM user id, not a credential'],
    [`commit ${fake(HEX, 40)}`, 'a git SHA'],
    [`secret sha1 ${fake(HEX, 40)}`, 'a hex hash next to "secret"'],
    [`blob ${token(40, `${ALNUM}/+`)}`, '40 base64 characters without AWS context'],
    [b64url({ alg: 'HS256' }), 'a JWT header alone'],
    [join_(b64url({ foo: 'bar' }), '.', b64url({ sub: 'x' }), '.', fake(ALNUM, 43)), 'a header without alg'],
    [Buffer.from(JSON.stringify({ alg: 'x', a: 1 })).toString('base64'), 'base64 JSON, not a JWT'],
    ['-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----', 'a public key'],
    ['-----BEGIN CERTIFICATE-----\nMIIBIjANBgkq\n-----END CERTIFICATE-----', 'a certificate'],
    ['if (pem.indexOf("-----BEGIN PRIVATE KEY-----") !== 0) throw err;', 'the armour line in code, no key'],
    ['-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----', 'a placeholder'],
    ['xoxo, gossip girl', 'a sign-off'],
    ['npm_config_registry=https://registry.npmjs.org/', 'an environment variable name'],
    ['from huggingface_hub import hf_hub_download', 'a function name'],
    [`request ${fake(HEX, 8)}-${fake(HEX, 4)}-4${fake(HEX, 3)}-a${fake(HEX, 3)}-${fake(HEX, 12)}`, 'a UUID'],
  ])('ignores %j (%s)', (text) => {
    expect(types(text)).toEqual([]);
  });

  it('takes a PEM block from BEGIN to END, and a truncated one to the end of its key material', () => {
    const block = pem('EC ');
    expect(found(`key:\n${block}\nthanks`)).toEqual([`secret.private_key:${block}`]);
    const truncated = join_('-----BEGIN ', 'PRIVATE KEY-----\n', fake(ALNUM, 100));
    expect(found(`${truncated}`)).toEqual([`secret.private_key:${truncated}`]);
  });

  it('accepts JWS with an empty signature and JWE with five parts', () => {
    expect(types(join_(b64url({ alg: 'none' }), '.', b64url({ sub: 'x' }), '.'))).toEqual(['secret.jwt']);
    const jwe = [b64url({ alg: 'RSA-OAEP', enc: 'A256GCM' }), fake(ALNUM, 342), fake(ALNUM, 16), fake(ALNUM, 80), fake(ALNUM, 22)].join('.');
    expect(types(jwe)).toEqual(['secret.jwt']);
  });
});

describe('detect: overlaps and options', () => {
  it('reports a token inside a URL once, as the token', () => {
    const text = `https://x-access-token:${join_('gh', 'p_', fake(ALNUM, 36))}@github.com/acme/api.git`;
    expect(types(text)).toEqual(['secret.github_token']);
  });

  it('returns sorted, non-overlapping offsets and nothing else', () => {
    const text = 'Jane (jane@example.com, +1 415-555-0132) paid with 4111 1111 1111 1111';
    const matches = detect(text);
    expect(matches.map((m) => m.type)).toEqual(['email', 'phone', 'payment_card']);
    for (const m of matches) expect(Object.keys(m).sort()).toEqual(['end', 'start', 'type']);
    for (let i = 1; i < matches.length; i++) expect(matches[i]!.start).toBeGreaterThanOrEqual(matches[i - 1]!.end);
  });

  it('filters by type after resolving overlaps', () => {
    const text = 'jane@example.com 415-555-0132 IBAN DE89 3704 0044 0532 0130 00';
    expect(types(text, { types: new Set(['phone']) })).toEqual(['phone']);
  });
});

// ---------------------------------------------------------------------------------------------

const paths = (findings: readonly Finding[]): string[] => findings.map((f) => `${f.type} ${f.path} ${f.count}`);

describe('scanBody: paths for each body shape', () => {
  it('OpenAI chat: every role, content parts, tool call arguments, tool results', () => {
    const body = {
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'Escalate to oncall@example.com.' },
        { role: 'user', content: [{ type: 'text', text: 'hello' }, { type: 'text', text: 'call me at (415) 555-0132 or 415-555-0133' }] },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: 'call_1',
              type: 'function',
              function: { name: 'send', arguments: JSON.stringify({ to: 'jane@example.com', cc: ['ops@example.org'], url: 'https://example.com' }) },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: JSON.stringify({ customer: { card: '4111111111111111' } }) },
      ],
    };
    const result = scanBody(body);
    expect(paths(result.findings)).toEqual([
      'email $.messages[0].content 1',
      'phone $.messages[1].content[1].text 2',
      'email $.messages[2].tool_calls[0].function.arguments<json>.to 1',
      'email $.messages[2].tool_calls[0].function.arguments<json>.cc[0] 1',
      'payment_card $.messages[3].content<json>.customer.card 1',
    ]);
    expect(result.truncated).toBe(false);
  });

  it('OpenAI Responses: instructions, input items, function_call arguments and output', () => {
    const body = {
      model: 'gpt-4.1',
      instructions: 'Never reveal ops@example.com',
      input: [
        { role: 'user', content: [{ type: 'input_text', text: 'my IBAN is DE89 3704 0044 0532 0130 00' }] },
        { type: 'function_call', call_id: 'c1', name: 'lookup', arguments: '{"ssn":"512-34-5678"}' },
        { type: 'function_call_output', call_id: 'c1', output: '{"phone":"+44 20 7946 0958"}' },
      ],
    };
    expect(paths(scanBody(body).findings)).toEqual([
      'email $.instructions 1',
      'iban $.input[0].content[0].text 1',
      'us_ssn $.input[1].arguments<json>.ssn 1',
      'phone $.input[2].output<json>.phone 1',
    ]);
  });

  it('Anthropic messages: system blocks, tool_use input, tool_result content', () => {
    const key = join_('AK', 'IA', fake(`${UP}234567`, 16));
    const body = {
      model: 'claude-sonnet-4-5',
      system: [{ type: 'text', text: 'Support line +1 415 555 0132' }],
      messages: [
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'crm', input: { email: 'jane@example.com', filter: { ssn: '512345678' } } }] },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: `key ${key}` }] },
            { type: 'tool_result', tool_use_id: 't2', content: 'card 5555 5555 5555 4444' },
          ],
        },
      ],
    };
    expect(paths(scanBody(body).findings)).toEqual([
      'phone $.system[0].text 1',
      'email $.messages[0].content[0].input.email 1',
      'us_ssn $.messages[0].content[0].input.filter.ssn 1',
      'secret.aws_access_key $.messages[1].content[0].content[0].text 1',
      'payment_card $.messages[1].content[1].content 1',
    ]);
  });

  it('MCP tools/call: params.arguments', () => {
    const body = { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'send_email', arguments: { to: 'a@example.com', 'reply-to': 'b@example.com', body: 'IBAN GB82 WEST 1234 5698 7654 32' } } };
    expect(paths(scanBody(body).findings)).toEqual([
      'email $.params.arguments.to 1',
      "email $.params.arguments['reply-to'] 1",
      'iban $.params.arguments.body 1',
    ]);
  });

  it('scans member names, reports them under <keys>, and never puts a value in a path', () => {
    const body = { metadata: { 'jane@example.com': { note: 'call 415-555-0132' }, plain: 'x' } };
    const result = scanBody(body);
    expect(paths(result.findings)).toEqual(['email $.metadata<keys> 1', "phone $.metadata['[REDACTED:email]'].note 1"]);
    expect(JSON.stringify(result)).not.toContain('jane@example.com');
    expect(JSON.stringify(result)).not.toContain('555-0132');
  });

  it('counts strings and bytes, skips base64 payloads and non-strings', () => {
    const image = 'iVBORw0KGgo'.repeat(100);
    const body = {
      messages: [
        { role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/png;base64,${image}` } }] },
        { role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: image } }] },
      ],
      temperature: 0.2,
      max_tokens: 4111111111111111,
      stream: true,
    };
    const result = scanBody(body);
    expect(result.findings).toEqual([]);
    // member names: messages, role, content, type, image_url, url, role, content, type, source,
    // type, media_type, data, temperature, max_tokens, stream (16); values: user, image_url,
    // user, image, base64, image/png (6); the two base64 payloads are skipped.
    expect(result.scannedStrings).toBe(22);
    expect(result.scannedBytes).toBeLessThan(200);
  });

  it('truncates strings over maxStringBytes and says so', () => {
    const text = `${'x'.repeat(100)} jane@example.com`;
    expect(scanBody({ text }, { maxStringBytes: 50 })).toMatchObject({ findings: [], truncated: true, scannedBytes: 4 + 50 });
    expect(scanBody({ text }).findings).toHaveLength(1);
  });

  it('does not parse a JSON string over maxStringBytes, scans its start as text', () => {
    const args = JSON.stringify({ to: 'jane@example.com', pad: 'x'.repeat(100) });
    const result = scanBody({ arguments: args }, { maxStringBytes: 40 });
    expect(paths(result.findings)).toEqual(['email $.arguments 1']);
    expect(result.truncated).toBe(true);
  });

  it('survives deep nesting: paths stop growing at maxDepth and findings are still reported', () => {
    let body: unknown = 'jane@example.com';
    for (let i = 0; i < 20_000; i++) body = [body];
    const result = scanBody({ deep: body }, { maxDepth: 3 });
    expect(paths(result.findings)).toEqual(['email $.deep[0][0]<deep> 1']);
  });

  it('aggregates per (type, path) in document order', () => {
    const body = { a: 'x@example.com y@example.com', b: ['z@example.com', 'w@example.com'] };
    expect(paths(scanBody(body).findings)).toEqual(['email $.a 2', 'email $.b[0] 1', 'email $.b[1] 1']);
  });
});

// ---------------------------------------------------------------------------------------------

function chatBody(): Record<string, unknown> {
  return {
    model: 'gpt-4o',
    temperature: 0.5,
    n: 1,
    stream: false,
    user: null,
    messages: [
      { role: 'system', content: 'Support: oncall@example.com' },
      { role: 'user', content: [{ type: 'text', text: 'card 4111 1111 1111 1111, phone (415) 555-0132' }] },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: {
              name: 'send',
              arguments: '{"id": 12345678901234567890, "to": "jane@example.com",\n "note": "IBAN DE89 3704 0044 0532 0130 00", "n": [1, 2.50, true, null]}',
            },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '[{"ok":true,"ssn":"512-34-5678"}]' },
    ],
  };
}

describe('redactBody', () => {
  it('returns a deep copy that is valid JSON, keeps tool arguments parseable and scans clean', () => {
    const body = chatBody();
    const before = structuredClone(body);
    const { body: out, redactions } = redactBody(body);
    expect(body).toEqual(before); // the input is untouched
    expect(JSON.parse(JSON.stringify(out))).toEqual(out);
    const findings = scanBody(body).findings;
    expect(redactions).toBe(findings.reduce((n, f) => n + f.count, 0));
    expect(scanBody(out).findings).toEqual([]);

    const messages = (out as { messages: Record<string, unknown>[] }).messages;
    expect(messages[0]!.content).toBe('Support: [REDACTED:email]');
    const args = (messages[2] as { tool_calls: { function: { arguments: string } }[] }).tool_calls[0]!.function.arguments;
    expect(JSON.parse(args)).toMatchObject({ to: '[REDACTED:email]', note: 'IBAN [REDACTED:iban]', n: [1, 2.5, true, null] });
    // The JSON text is edited in place: big integers, number spelling and layout survive.
    expect(args).toBe('{"id": 12345678901234567890, "to": "[REDACTED:email]",\n "note": "IBAN [REDACTED:iban]", "n": [1, 2.50, true, null]}');
    expect(JSON.parse(messages[3]!.content as string)).toEqual([{ ok: true, ssn: '[REDACTED:us_ssn]' }]);
    expect(out).toMatchObject({ model: 'gpt-4o', temperature: 0.5, n: 1, stream: false, user: null });
  });

  it('redacts only the requested types', () => {
    const { body: out, redactions } = redactBody(chatBody(), new Set(['email']));
    expect(redactions).toBe(2);
    expect(scanBody(out).findings.map((f) => f.type).sort()).toEqual(['iban', 'payment_card', 'phone', 'us_ssn']);
  });

  it('redacts member names and keeps colliding names apart', () => {
    const { body: out, redactions } = redactBody({ 'a@example.com': 1, 'b@example.org': { 'c@example.net': 'x' } });
    expect(redactions).toBe(3);
    expect(out).toEqual({ '[REDACTED:email]': 1, '[REDACTED:email]#2': { '[REDACTED:email]': 'x' } });
  });

  it('keeps a __proto__ member as data', () => {
    const body = JSON.parse('{"__proto__": {"to": "jane@example.com"}}') as unknown;
    const { body: out } = redactBody(body);
    expect(Object.getPrototypeOf(out)).toBe(Object.prototype);
    expect(JSON.stringify(out)).toBe('{"__proto__":{"to":"[REDACTED:email]"}}');
  });

  it('uses the member name as context inside JSON-text arguments too', () => {
    const { body: out } = redactBody({ arguments: '{"cardNumber": "4111111111111111", "ssn": ["512345678"]}' });
    expect(out).toEqual({ arguments: '{"cardNumber": "[REDACTED:payment_card]", "ssn": ["[REDACTED:us_ssn]"]}' });
  });

  it('copies deep bodies without overflowing the stack', () => {
    let body: unknown = 'jane@example.com';
    for (let i = 0; i < 100_000; i++) body = { a: body };
    expect(redactBody(body).redactions).toBe(1);
  });

  it('is idempotent', () => {
    const once = redactBody(chatBody()).body;
    expect(redactBody(once)).toEqual({ body: once, redactions: 0 });
  });
});

describe('redactText', () => {
  it('redacts a plain text (LiteLLM texts), JSON or not', () => {
    expect(redactText('mail jane@example.com or call 415-555-0132')).toEqual({ text: 'mail [REDACTED:email] or call [REDACTED:phone]', redactions: 2 });
    expect(redactText('{"a": "jane@example.com"}', new Set(['phone']))).toEqual({ text: '{"a": "jane@example.com"}', redactions: 0 });
  });
});

// ---------------------------------------------------------------------------------------------

describe('corpus', () => {
  const entries = parseCorpus(readFileSync(CORPUS, 'utf8'));
  const evaluation = evaluateCorpus(entries);

  it('is large and covers every type with positives and hard negatives', () => {
    expect(entries.length).toBeGreaterThanOrEqual(300);
    expect(entries.filter((e) => e.expect.length === 0).length).toBeGreaterThanOrEqual(150);
    for (const score of evaluation.byType) expect(score.tp + score.fn, score.type).toBeGreaterThanOrEqual(4);
  });

  it.each(FINDING_TYPES)('%s has precision and recall of at least 0.95', (type) => {
    const score = evaluation.byType.find((s) => s.type === type)!;
    expect(score.precision, `${type} precision (${score.tp} TP, ${score.fp} FP)`).toBeGreaterThanOrEqual(0.95);
    expect(score.recall, `${type} recall (${score.tp} TP, ${score.fn} FN)`).toBeGreaterThanOrEqual(0.95);
  });

  it('rejects malformed corpora, naming the line', () => {
    const good = '{"id":"a","text":"x","expect":[]}';
    const bad: [string, RegExp][] = [
      [`${good}\n{"id":"b","text":"x","expect":[{"type":"emails","count":1}]}`, /line 2: unknown finding type/],
      [`${good}\n${good}`, /line 2: duplicate id a/],
      [`${good}\n{"id":"c","text":"x"`, /line 2: not valid JSON/],
      ['{"id":"d","text":"x","expect":[{"type":"email","count":0}]}', /line 1: count must be a positive integer/],
      ['{"id":"e","text":1,"expect":[]}', /line 1: text must be a string/],
    ];
    for (const [text, message] of bad) {
      expect(() => parseCorpus(text)).toThrow(CorpusError);
      expect(() => parseCorpus(text)).toThrow(message);
    }
  });
});

describe('linear time on adversarial input', () => {
  const MB = 1 << 20;
  const fill = (unit: string): string => unit.repeat(Math.ceil(MB / unit.length)).slice(0, MB);
  const cases: [string, string][] = [
    ['letters', fill('a')],
    ['digits', fill('1')],
    ['spaced digits', fill('1 ')],
    ['card groups', fill('4111 1111 ')],
    ['dash groups', fill('4111-')],
    ['local parts', fill('a.')],
    ['at signs', fill('a@')],
    ['domain labels', `a@${fill('a.')}`],
    ['plus and parens', fill('+1 (2')],
    ['NANP prefixes', fill('415-555-')],
    ['SSN prefixes', fill('512 34 ')],
    ['IBAN starts', fill('DE89 ')],
    ['IBAN groups', `DE89 ${fill('1234 ')}`],
    ['BEGIN lines', fill('-----BEGIN PRIVATE KEY-----')],
    ['BEGIN and END', fill('-----BEGIN PRIVATE KEY-----\n-----END X-----')],
    ['unterminated keys', fill('-----BEGIN RSA PRIVATE KEY-----\nAAAA!')],
    ['JWT prefixes', fill('eyJ')],
    ['JWT dots', `eyJ${fill('a.')}`],
    ['base64', fill('QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3+/')],
    ['secret context', `aws secret ${fill('Ab1/')}`],
    ['token prefixes', fill('sk-ghp_xoxb-1234567-')],
    ['mixed findings', fill('x 415 555 2671 y4111 1111 1111 1111 z@e.co +44 20 ')],
  ];

  it.each(cases)('detect on 1 MB of %s finishes quickly', (_name, text) => {
    const start = performance.now();
    detect(text);
    expect(performance.now() - start).toBeLessThan(2_000);
  });

  it('scanBody and redactBody on a body holding 1 MB adversarial strings finish quickly', () => {
    const body = { messages: cases.slice(0, 6).map(([, text]) => ({ role: 'user', content: text })) };
    const start = performance.now();
    scanBody(body);
    redactBody(body);
    expect(performance.now() - start).toBeLessThan(6_000);
  });
});

describe('the policy result schema and the detectors agree', () => {
  it('redact.types accepts exactly the finding types the detectors produce', async () => {
    const schema = (await import('../src/policy/schema/result.schema.json', { with: { type: 'json' } })).default as {
      definitions: { findingType: { enum: string[] } };
    };
    expect([...schema.definitions.findingType.enum].sort()).toEqual([...FINDING_TYPES].sort());
  });
});

describe('remembered findings (detectRemembered)', () => {
  it('answers exactly as detect does, per context, for texts seen again', () => {
    clearRememberedFindings();
    // The bare 9-digit number is an SSN only next to its keyword.
    const text = `${'Please file the attached form for the new hire. '.repeat(3)}Number 512345678.`;
    for (let round = 0; round < 3; round++) {
      expect(detectRemembered(text)).toEqual(detect(text));
      expect(detectRemembered(text, 'ssn')).toEqual(detect(text, { context: 'ssn' }));
      expect(detectRemembered(text, 'notes')).toEqual(detect(text, { context: 'notes' }));
    }
    expect(detectRemembered(text, 'ssn').map((m) => m.type)).toContain('us_ssn');
    expect(detectRemembered(text).map((m) => m.type)).not.toContain('us_ssn');
  });

  it('scans a text seen under more contexts than it keeps afresh, still correctly', () => {
    clearRememberedFindings();
    const text = `${'Contact details follow for the account. '.repeat(4)}jane.doe@example.com`;
    for (const context of ['a', 'b', 'c', 'd', 'e', 'ssn', 'a']) expect(detectRemembered(text, context)).toEqual(detect(text, { context }));
  });
});

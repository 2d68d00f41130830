/**
 * npm run bench:peer: Signalbox side by side with opa-envoy-plugin (the engine OPA users put
 * behind Envoy's ext_authz), on the same policies, driven by the same load generator, in one run:
 *
 *   policies     jwt-rbac (a verified ES256 JWT + role grants on route, model and tools: Signalbox's
 *                default policy vs bench/peer/jwt-rbac.rego) and header-rbac (a role header, no
 *                token: bench/peer/header-rbac.rego on both). Before anything is timed, both
 *                engines must allow and deny the same requests (bench/peer/agree.ts).
 *   generator    ghz: BENCH_USERS (200) distinct requests round-robin, concurrency
 *                BENCH_CONCURRENCY (32) over BENCH_CONNECTIONS (4) HTTP/2 connections, the same
 *                for both engines (Signalbox workers share a port, so one connection would pin
 *                all load to one worker).
 *   placements   unpinned, and pinned (server on cpu 0, ghz on cpu 1, with taskset).
 *   figures      per engine and as Signalbox ÷ OPA: decisions/s, p50/p99 at saturation, p50/p99
 *                at a fixed BENCH_RPS (1,000) rps, server CPU µs per decision and cores used
 *                (utime + stime of the server's whole process tree, from /proc), and peak RSS
 *                (VmHWM, summed over the tree, and per process).
 *   end to end   Envoy 1.40 in front of nginx with Signalbox, with opa-envoy-plugin, and with no
 *                ext_authz, driven by vegeta at BENCH_E2E_RPS (500) rps: p50/p99 and the ratios,
 *                twice per start: fresh (from BENCH_WARMUP_SECONDS after the start, when a JIT
 *                is still compiling: a deploy or a restart) and warm (after BENCH_E2E_WARM_SECONDS
 *                more at the same rate: a server that has been running).
 *
 * Each measurement starts its server afresh; rounds alternate the engines (and which goes first)
 * so drift on a noisy machine hits both, and the median round is reported. Signalbox runs with
 * audit on (buffered, its default); opa-envoy-plugin with decision logs off (its default).
 * BENCH_OPA_DECISION_LOGS=console adds a third engine to the rounds: opa-envoy-plugin logging
 * every decision to the console (into a file), so Signalbox's audit trail is also compared with
 * OPA's own decision log on the same load.
 *
 * Settings: BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_WARMUP_SECONDS (2), BENCH_USERS,
 * BENCH_CONCURRENCY, BENCH_CONNECTIONS, BENCH_RPS, BENCH_E2E_RPS, BENCH_E2E_WARM_SECONDS (10),
 * BENCH_WORKERS (writes `server.workers: N` into Signalbox's config), BENCH_PROFILE (a directory for V8 CPU profiles
 * of Signalbox's processes, as npm run bench), BENCH_SCENARIOS (jwt-rbac,header-rbac),
 * BENCH_PLACEMENTS (unpinned,pinned; none runs only the agreement check and the Envoy part),
 * BENCH_E2E (1; 0 skips the Envoy part), BENCH_OPA_DECISION_LOGS (off; console adds the third engine).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkAgreement, responseBytes, type AgreementLine } from './peer/agree.js';
import { signalboxConfig, signalboxWorkers, startOpa, startSignalbox, type EngineName, type RunningEngine } from './peer/engines.js';
import { attack, envoyConfig, startEnvoy, startUpstream, writeTargets, type HttpTarget, type VegetaResult } from './peer/end-to-end.js';
import { runGhz } from './peer/ghz.js';
import { machineBusy, removeOnExit, sampleTree, stopAll, treeCpuMicros, type ProcessSample } from './peer/processes.js';
import { headerScenario, jwtScenario, type Scenario } from './peer/scenarios.js';
import { findTools, type Tools } from './peer/tools.js';
import { freePort } from '../test/helpers/gateways.js';

function setting(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, not "${raw}"`);
  return value;
}

function list<T extends string>(name: string, all: readonly T[]): T[] {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return [...all];
  if (raw === 'none') return [];
  const chosen = raw.split(',').map((s) => s.trim());
  const unknown = chosen.filter((c) => !all.includes(c as T));
  if (unknown.length > 0) throw new Error(`${name}: unknown ${unknown.join(', ')} (choose from ${all.join(', ')})`);
  return chosen as T[];
}

const SECONDS = setting('BENCH_SECONDS', 10);
const ROUNDS = setting('BENCH_ROUNDS', 3);
const WARMUP_SECONDS = setting('BENCH_WARMUP_SECONDS', 2);
const USERS = setting('BENCH_USERS', 200);
const CONCURRENCY = setting('BENCH_CONCURRENCY', 32);
const CONNECTIONS = setting('BENCH_CONNECTIONS', 4);
const FIXED_RPS = setting('BENCH_RPS', 1000);
const E2E_RPS = setting('BENCH_E2E_RPS', 500);
const E2E_WARM_SECONDS = setting('BENCH_E2E_WARM_SECONDS', 10);
const E2E = process.env.BENCH_E2E !== '0';
const SCENARIOS = list('BENCH_SCENARIOS', ['jwt-rbac', 'header-rbac'] as const);
const PLACEMENTS = list('BENCH_PLACEMENTS', ['unpinned', 'pinned'] as const);
type Placement = (typeof PLACEMENTS)[number];

/** Where the server and ghz run in each placement. */
const CPUS: Record<Placement, { server?: number; generator?: number }> = { unpinned: {}, pinned: { server: 0, generator: 1 } };

const ENGINE_LABEL: Record<EngineName, string> = { signalbox: 'Signalbox', opa: 'opa-envoy-plugin', 'opa-logged': 'opa-envoy-plugin, decision logs to console' };

/** The engines measured in the rounds: both, plus opa-envoy-plugin logging its decisions when asked. */
const ENGINES: readonly EngineName[] = ((): EngineName[] => {
  const logs = process.env.BENCH_OPA_DECISION_LOGS ?? 'off';
  if (logs !== 'off' && logs !== 'console' && logs !== '') throw new Error(`BENCH_OPA_DECISION_LOGS must be off or console, not "${logs}"`);
  return logs === 'console' ? ['signalbox', 'opa', 'opa-logged'] : ['signalbox', 'opa'];
})();

interface Measurement {
  perSecond: number;
  cores: number;
  p50Ms: number;
  p99Ms: number;
  fixedRate: number;
  fixedP50Ms: number;
  fixedP99Ms: number;
  cpuMicrosPerDecision: number;
  /** ghz's CPU per call over the saturation run (it decodes every response). */
  generatorMicrosPerCall: number;
  peakRssMiB: number;
  processes: ProcessSample[];
  /** Cores busy with anything but the server during the saturation run (ghz, and whatever else runs on the machine). */
  othersCores: number;
  /** Pinned only: cores of the server's cpu busy with other processes (what stole from the server). */
  othersOnServerCpu?: number;
}

const out = (line = ''): void => {
  process.stdout.write(`${line}\n`);
};

function mib(kib: number): number {
  return kib / 1024;
}

function describeProcesses(processes: readonly ProcessSample[]): string {
  return processes.map((p) => `${p.command}[${p.pid}] ${mib(p.peakRssKiB).toFixed(0)}`).join(' + ');
}

async function startEngine(engine: EngineName, scenario: Scenario, tools: Tools, dir: string, cpu?: number): Promise<RunningEngine> {
  return engine === 'signalbox' ? startSignalbox(scenario.signalbox, dir, cpu) : startOpa(tools.opaEnvoyPlugin, scenario.opa, dir, cpu, engine === 'opa-logged');
}

/** One measurement: a fresh server, warm-up, saturation (with CPU), a fixed-rate run, then peak RSS. */
async function measure(engine: EngineName, scenario: Scenario, placement: Placement, tools: Tools, dir: string): Promise<Measurement> {
  const cpus = CPUS[placement];
  const running = await startEngine(engine, scenario, tools, dir, cpus.server);
  try {
    const drive = (seconds: number, rps?: number) =>
      runGhz({
        ghz: tools.ghz,
        port: running.grpcPort,
        dataFile: scenario.loadFile,
        seconds,
        concurrency: CONCURRENCY,
        connections: CONNECTIONS,
        reportFile: join(dir, `ghz-${engine}.json`),
        ...(rps === undefined ? {} : { rps }),
        ...(cpus.generator === undefined ? {} : { cpu: cpus.generator }),
      });
    await drive(WARMUP_SECONDS);
    // CPU is sampled around the whole ghz process, so cores are per wall time of that same window.
    const before = treeCpuMicros(sampleTree(running.group.pid));
    const busyBefore = machineBusy();
    const started = performance.now();
    const saturated = await drive(SECONDS);
    const wallMicros = (performance.now() - started) * 1000;
    const busyAfter = machineBusy();
    const cpuMicros = treeCpuMicros(sampleTree(running.group.pid)) - before;
    const busy = (cpu: string): number => ((busyAfter[cpu] ?? 0) - (busyBefore[cpu] ?? 0)) / wallMicros;
    const serverCpu = cpus.server === undefined ? undefined : `cpu${cpus.server}`;
    const fixed = await drive(SECONDS, FIXED_RPS);
    const processes = sampleTree(running.group.pid);
    return {
      perSecond: saturated.perSecond,
      cores: cpuMicros / wallMicros,
      p50Ms: saturated.p50Ms,
      p99Ms: saturated.p99Ms,
      fixedRate: fixed.perSecond,
      fixedP50Ms: fixed.p50Ms,
      fixedP99Ms: fixed.p99Ms,
      cpuMicrosPerDecision: cpuMicros / saturated.count,
      generatorMicrosPerCall: saturated.generatorCpuMicros / saturated.count,
      peakRssMiB: mib(processes.reduce((sum, p) => sum + p.peakRssKiB, 0)),
      processes,
      othersCores: Math.max(0, busy('cpu') - cpuMicros / wallMicros),
      ...(serverCpu === undefined ? {} : { othersOnServerCpu: Math.max(0, busy(serverCpu) - cpuMicros / wallMicros) }),
    };
  } finally {
    await running.stop();
  }
}

/** The median; of an even count, the mean of the middle two (so two rounds are not one round's figure). */
function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Runs both engines on each scenario, unpinned, and fails unless they decide alike. */
async function verify(scenarios: readonly Scenario[], tools: Tools, dir: string): Promise<void> {
  for (const scenario of scenarios) {
    const signalbox = await startEngine('signalbox', scenario, tools, dir);
    try {
      const opa = await startEngine('opa', scenario, tools, dir);
      let lines: AgreementLine[];
      let bytes: { signalbox: number; opa: number };
      try {
        lines = await checkAgreement(scenario, signalbox, opa);
        const allowed = scenario.load[0]!;
        bytes = { signalbox: await responseBytes(signalbox.grpcPort, allowed), opa: await responseBytes(opa.grpcPort, allowed) };
      } finally {
        await opa.stop();
      }
      const verdict = (allowed: boolean, status?: number): string => (allowed ? 'allow' : `deny${status ? ` (${status})` : ''}`);
      out(`${scenario.title}: both engines agree on ${lines.length} cases and allow all ${scenario.load.length} load requests`);
      out(`  CheckResponse to an allowed load request: Signalbox ${bytes.signalbox} bytes, opa-envoy-plugin ${bytes.opa} bytes (${(bytes.signalbox / bytes.opa).toFixed(2)}×)`);
      for (const l of lines) out(`  ${l.name.padEnd(42)} ${verdict(l.expected).padEnd(6)} signalbox ${verdict(l.signalbox.allowed, l.signalbox.httpStatus).padEnd(12)} opa ${verdict(l.opa.allowed, l.opa.httpStatus)}`);
    } finally {
      await signalbox.stop();
    }
  }
}

type Key = `${string}/${Placement}/${EngineName}`;

async function benchmarkEngines(scenarios: readonly Scenario[], tools: Tools, dir: string): Promise<Map<Key, Measurement[]>> {
  const results = new Map<Key, Measurement[]>();
  for (const placement of PLACEMENTS) {
    for (let round = 1; round <= ROUNDS; round++) {
      // Alternate which engine goes first, so neither always runs on a machine warmed by the other.
      const order = round % 2 === 1 ? ENGINES : [...ENGINES].reverse();
      for (const scenario of scenarios) {
        for (const engine of order) {
          const m = await measure(engine, scenario, placement, tools, dir);
          const key: Key = `${scenario.name}/${placement}/${engine}`;
          results.set(key, [...(results.get(key) ?? []), m]);
          out(
            `  round ${round} ${placement.padEnd(8)} ${scenario.name.padEnd(11)} ${engine.padEnd(10)} ${m.perSecond.toFixed(0).padStart(6)}/s ` +
              `(${m.cores.toFixed(2)} cores)  p50 ${m.p50Ms.toFixed(2)} p99 ${m.p99Ms.toFixed(2)} ms  ` +
              `@${FIXED_RPS}rps (got ${m.fixedRate.toFixed(0)}): p50 ${m.fixedP50Ms.toFixed(2)} p99 ${m.fixedP99Ms.toFixed(2)} ms  ` +
              `cpu ${m.cpuMicrosPerDecision.toFixed(0)} µs/decision (ghz ${m.generatorMicrosPerCall.toFixed(0)} µs/call)  peak RSS ${m.peakRssMiB.toFixed(0)} MiB (${describeProcesses(m.processes)})  ` +
              `other load ${m.othersCores.toFixed(2)} cores${m.othersOnServerCpu === undefined ? '' : `, ${m.othersOnServerCpu.toFixed(2)} of them on the server's cpu`}`,
          );
        }
      }
    }
  }
  return results;
}

function printEngineTables(scenarios: readonly Scenario[], results: Map<Key, Measurement[]>): void {
  const fields: [string, (m: Measurement) => number, number][] = [
    ['decisions/s', (m) => m.perSecond, 0],
    ['cores used', (m) => m.cores, 2],
    ['p50 ms', (m) => m.p50Ms, 2],
    ['p99 ms', (m) => m.p99Ms, 2],
    [`p50 ms @ ${FIXED_RPS} rps`, (m) => m.fixedP50Ms, 2],
    [`p99 ms @ ${FIXED_RPS} rps`, (m) => m.fixedP99Ms, 2],
    ['CPU µs/decision', (m) => m.cpuMicrosPerDecision, 0],
    ['ghz CPU µs/call', (m) => m.generatorMicrosPerCall, 0],
    ['peak RSS MiB', (m) => m.peakRssMiB, 0],
  ];
  const summary: string[] = [];
  for (const scenario of scenarios) {
    for (const placement of PLACEMENTS) {
      const of = (engine: EngineName): Measurement[] => results.get(`${scenario.name}/${placement}/${engine}`) ?? [];
      const s = of('signalbox');
      const o = of('opa');
      if (s.length === 0 || o.length === 0) continue;
      out(`\n### ${scenario.title}, ${placement}${placement === 'pinned' ? ' (server on cpu 0, ghz on cpu 1)' : ''}: median of ${s.length} round(s)\n`);
      out(`| engine | ${fields.map(([name]) => name).join(' | ')} |`);
      out(`|---|${fields.map(() => '---').join('|')}|`);
      const logged = of('opa-logged');
      for (const engine of ENGINES) {
        const ms = of(engine);
        if (ms.length > 0) out(`| ${ENGINE_LABEL[engine]} | ${fields.map(([, get, digits]) => median(ms.map(get)).toFixed(digits)).join(' | ')} |`);
      }
      const ratioOf = (a: Measurement[], b: Measurement[]) => (get: (m: Measurement) => number): string => `${(median(a.map(get)) / median(b.map(get))).toFixed(2)}×`;
      const ratio = ratioOf(s, o);
      const ratioRow = (label: string, of: (get: (m: Measurement) => number) => string): void => out(`| ${label} | ${fields.map(([, get]) => of(get)).join(' | ')} |`);
      ratioRow('Signalbox ÷ OPA', ratio);
      if (logged.length > 0) {
        ratioRow('Signalbox ÷ OPA with decision logs', ratioOf(s, logged));
        ratioRow('OPA with decision logs ÷ OPA', ratioOf(logged, o));
      }
      const processes = (ms: Measurement[]): string => describeProcesses(ms[ms.length - 1]!.processes);
      out(`\nper process, peak RSS MiB (last round): Signalbox ${processes(s)}; opa-envoy-plugin ${processes(o)}`);
      summary.push(
        `| ${scenario.title}, ${placement} | ${ratio((m) => m.perSecond)} (Signalbox ${median(s.map((m) => m.cores)).toFixed(2)} cores, OPA ${median(o.map((m) => m.cores)).toFixed(2)}) | ${ratio((m) => m.cpuMicrosPerDecision)} | ${ratio((m) => m.p99Ms)} | ${ratio((m) => m.fixedP99Ms)} | ${ratio((m) => m.peakRssMiB)} |`,
      );
    }
  }
  out(`\n### Summary: Signalbox ÷ opa-envoy-plugin (same run)\n`);
  out(`| | decisions/s | CPU µs/decision | p99 at saturation | p99 @ ${FIXED_RPS} rps | peak RSS |`);
  out('|---|---|---|---|---|---|');
  for (const line of summary) out(line);
}

type E2eSetup = Exclude<EngineName, 'opa-logged'> | 'none';

/** The two measured windows of each start: right after the warm-up, and once warm. */
type E2eWindow = 'fresh' | 'warm';

/** Envoy in front of nginx with each ext_authz setup, at a fixed rate; p50/p99 per setup. */
async function endToEnd(scenario: Scenario, tools: Tools, dir: string, targets: readonly HttpTarget[]): Promise<void> {
  out(
    `\n## End to end: Envoy 1.40 (default worker threads: ${availableParallelism()}) → nginx, ${scenario.title}, ` +
      `vegeta at ${E2E_RPS} rps, unpinned; per start, fresh: ${SECONDS}s after ${WARMUP_SECONDS}s warm-up, ` +
      `then warm: ${SECONDS}s after ${E2E_WARM_SECONDS}s more\n`,
  );
  const upstream = await startUpstream(tools.nginx, dir);
  const results = new Map<string, VegetaResult[]>();
  const key = (setup: E2eSetup, window: E2eWindow): string => `${setup} ${window}`;
  try {
    const setups: E2eSetup[] = ['signalbox', 'opa', 'none'];
    for (let round = 1; round <= ROUNDS; round++) {
      // Rotate the order each round.
      const order = setups.map((_, i) => setups[(i + round - 1) % setups.length]!);
      for (const setup of order) {
        const engine = setup === 'none' ? undefined : await startEngine(setup, scenario, tools, dir);
        try {
          const port = await freePort();
          const envoy = await startEnvoy(await envoyConfig(port, upstream.port, engine?.grpcPort));
          try {
            const targetsFile = join(dir, `targets-${setup}.json`);
            await writeTargets(targetsFile, port, targets);
            await assertThroughEnvoy(port, setup, targets[0]!);
            for (const [window, warmUpSeconds] of [['fresh', WARMUP_SECONDS], ['warm', E2E_WARM_SECONDS]] as const) {
              await attack(tools.vegeta, targetsFile, E2E_RPS, warmUpSeconds, dir);
              const r = await attack(tools.vegeta, targetsFile, E2E_RPS, SECONDS, dir);
              results.set(key(setup, window), [...(results.get(key(setup, window)) ?? []), r]);
              const failed = Object.values(r.failures).reduce((a, b) => a + b, 0);
              out(
                `  round ${round} ${setup.padEnd(9)} ${window.padEnd(5)} ${r.requests} requests at ${r.rate.toFixed(0)}/s  p50 ${r.p50Ms.toFixed(2)} ms  p99 ${r.p99Ms.toFixed(2)} ms` +
                  (failed > 0 ? `  NOT 200: ${JSON.stringify(r.failures)}` : '  all 200'),
              );
            }
          } finally {
            await envoy.stop();
          }
        } finally {
          await engine?.stop();
        }
      }
    }
  } finally {
    await upstream.group.stop();
  }
  const label: Record<E2eSetup, string> = { signalbox: 'Envoy + Signalbox', opa: 'Envoy + opa-envoy-plugin', none: 'Envoy, no ext_authz' };
  const windows = ['fresh', 'warm'] as const;
  const p = (setup: E2eSetup, window: E2eWindow, field: 'p50Ms' | 'p99Ms'): number => median((results.get(key(setup, window)) ?? []).map((r) => r[field]));
  out(`\n| setup | p50 ms fresh | p99 ms fresh | p50 ms warm | p99 ms warm |`);
  out('|---|---|---|---|---|');
  const cells = (value: (window: E2eWindow, field: 'p50Ms' | 'p99Ms') => string): string => windows.map((w) => `${value(w, 'p50Ms')} | ${value(w, 'p99Ms')}`).join(' | ');
  for (const setup of ['signalbox', 'opa', 'none'] as const) out(`| ${label[setup]} | ${cells((w, f) => p(setup, w, f).toFixed(2))} |`);
  const ratio = (a: E2eSetup, b: E2eSetup): string => `| ${label[a]} ÷ ${label[b]} | ${cells((w, f) => `${(p(a, w, f) / p(b, w, f)).toFixed(2)}×`)} |`;
  out(ratio('signalbox', 'opa'));
  out(ratio('signalbox', 'none'));
  out(ratio('opa', 'none'));
  const failures = [...results.entries()].filter(([, rs]) => rs.some((r) => Object.keys(r.failures).length > 0));
  if (failures.length > 0) out(`\nWARNING: some end-to-end requests were not answered 200 (${failures.map(([s]) => s).join(', ')}): see the round lines.`);
}

/** Through Envoy, the allowed request must reach nginx (200) and a request without its credential must be stopped (except with no ext_authz). */
async function assertThroughEnvoy(port: number, setup: E2eSetup, target: HttpTarget): Promise<void> {
  const send = async (headers: Record<string, string>): Promise<number> => {
    // Envoy may answer 503 for an instant while its first ext_authz connection comes up.
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(`http://127.0.0.1:${port}${target.path}`, { method: target.method, headers, ...(target.body === undefined ? {} : { body: target.body }) });
      await response.arrayBuffer();
      if (response.status !== 503 || attempt >= 20) return response.status;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const allowed = await send(target.headers);
  if (allowed !== 200) throw new Error(`end to end (${setup}): an allowed request got ${allowed} through Envoy, not 200`);
  const stripped = Object.fromEntries(Object.entries(target.headers).filter(([name]) => !['authorization', 'x-bench-role'].includes(name.toLowerCase())));
  const denied = await send(stripped);
  const expected = setup === 'none' ? denied === 200 : denied === 401 || denied === 403;
  if (!expected) throw new Error(`end to end (${setup}): a request without its credential got ${denied} through Envoy`);
}

/** The load requests of a scenario as HTTP requests for Envoy. */
function httpTargets(scenario: Scenario): HttpTarget[] {
  return scenario.load.map((request) => {
    const http = (request as { attributes: { request: { http: { method: string; path: string; headers: Record<string, string>; body?: string } } } }).attributes.request.http;
    // Envoy sets content-length itself from the body it forwards.
    const headers = Object.fromEntries(Object.entries(http.headers).filter(([name]) => name !== 'content-length'));
    return { method: http.method, path: http.path, headers, ...(http.body === undefined ? {} : { body: http.body }) };
  });
}

async function main(): Promise<void> {
  const tools = findTools();
  const dir = await mkdtemp(join(tmpdir(), 'signalbox-bench-peer-'));
  removeOnExit(dir);
  try {
    const scenarios: Scenario[] = [];
    if (SCENARIOS.includes('jwt-rbac')) scenarios.push(await jwtScenario(dir, USERS));
    if (SCENARIOS.includes('header-rbac')) scenarios.push(await headerScenario(dir, USERS));
    const workers = signalboxWorkers();
    out('# Signalbox vs opa-envoy-plugin v1.15.2-envoy\n');
    out(
      `ghz v0.121.0: ${USERS} distinct requests round-robin, concurrency ${CONCURRENCY} over ${CONNECTIONS} connections, ` +
        `${SECONDS}s per measurement after ${WARMUP_SECONDS}s warm-up, ${ROUNDS} round(s) alternating the engines, median reported; fixed rate ${FIXED_RPS} rps.`,
    );
    out(`Signalbox: \`signalbox serve --config\` (dist/bundle/), audit ON (buffered), in-memory store, server.workers: ${workers ?? 'not set (the default)'}.`);
    out('opa-envoy-plugin: envoy_ext_authz_grpc plugin, decision logs OFF (no decision_logs config).');
    if (ENGINES.includes('opa-logged')) out('opa-envoy-plugin, decision logs to console: the same with `decision_logs.console: true`, its output written to a file.');
    out('Server CPU and peak RSS: the server process and all its descendants, from /proc.\n');
    for (const scenario of scenarios) {
      out(`Signalbox config for ${scenario.title} (ports and paths are per run):\n\n\`\`\`yaml\n${signalboxConfig(scenario.signalbox, { grpc: 0, http: 0 }, 'TMP/audit/decisions.jsonl')}\`\`\`\n`);
    }
    await verify(scenarios, tools, dir);
    out('\n## Per round\n');
    const results = await benchmarkEngines(scenarios, tools, dir);
    if (results.size > 0) printEngineTables(scenarios, results);
    const jwt = scenarios.find((s) => s.name === 'jwt-rbac');
    if (E2E && jwt) await endToEnd(jwt, tools, dir, httpTargets(jwt));
  } finally {
    await stopAll();
    await rm(dir, { recursive: true, force: true });
  }
}

void main().catch(async (error: unknown) => {
  process.stderr.write(`bench:peer failed: ${error instanceof Error ? error.message : String(error)}\n`);
  await stopAll();
  process.exitCode = 1;
});

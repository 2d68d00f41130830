/**
 * The Helm chart (deploy/helm/signalbox), rendered by the real Helm (scripts/install-helm.sh) and
 * every manifest decoded strictly by Kubernetes' own Go types (test/k8s-validate,
 * scripts/build-k8s-validate.sh): an unknown or duplicated field, a wrong type or a bad name fails.
 * On top of that, what the chart promises is checked on the decoded objects: probes on the real
 * health endpoints and ports, a non-root read-only container, Secret mounts where the config
 * points, a config Signalbox itself accepts, and an example Envoy the real Envoy accepts.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';
import type { SignalboxConfig } from '../src/config/schema.js';
import { projectRoot } from '../src/core/paths.js';
import { validateEnvoyFile } from './helpers/envoy.js';

const root = projectRoot();
const chart = join(root, 'deploy', 'helm', 'signalbox');
const exampleValues = join(root, 'deploy', 'helm', 'examples', 'envoy-openai.yaml');

/** A tool the test scripts install; missing is a loud failure, never a skip. */
function tool(name: string, script: string): string {
  const path = join(root, '.tools', 'bin', name);
  if (!existsSync(path)) throw new Error(`${name} not found at ${path}: run "bash scripts/${script}" (npm test runs it)`);
  return path;
}

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(command: string, args: string[], input?: string): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(command, args, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    child.stdin?.end(input ?? '');
  });
}

/** One manifest as Kubernetes decoded it. */
interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name: string;
  // The typed object re-encoded as JSON; its shape is Kubernetes', read here field by field.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly object: any;
}

/** The chart rendered with `args` (--set, -f), every document strictly validated. */
async function render(args: string[] = []): Promise<Manifest[]> {
  const helm = await run(tool('helm', 'install-helm.sh'), ['template', 'rel', chart, '--namespace', 'llm', ...args]);
  expect(helm.code, helm.stderr).toBe(0);
  const validated = await run(tool('k8s-validate', 'build-k8s-validate.sh'), [], helm.stdout);
  expect(validated.code, `${validated.stderr}\n${helm.stdout}`).toBe(0);
  return JSON.parse(validated.stdout) as Manifest[];
}

function one(manifests: Manifest[], kind: string, name: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind && m.name === name);
  expect(found, `${kind}/${name} among ${manifests.map((m) => `${m.kind}/${m.name}`).join(', ')}`).toHaveLength(1);
  return found[0] as Manifest;
}

/** The Signalbox config of a rendering, validated by Signalbox's own loader with the pod's env. */
function signalboxConfig(manifests: Manifest[], env: Record<string, string> = {}): SignalboxConfig {
  const text = one(manifests, 'ConfigMap', 'rel-signalbox').object.data['signalbox.yaml'] as string;
  return parseConfig(text, { POD_NAME: 'rel-signalbox-abc12', ...env }, 'signalbox.yaml');
}

/** The checks every rendering of Signalbox's Deployment must pass. */
function checkDeployment(manifests: Manifest[], config: SignalboxConfig): void {
  const deployment = one(manifests, 'Deployment', 'rel-signalbox').object;
  const pod = deployment.spec.template.spec;
  const [container] = pod.containers;
  expect(pod.containers).toHaveLength(1);

  // Probes on the real endpoints, on the port the config listens on.
  const ports = Object.fromEntries(container.ports.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]));
  expect(ports).toEqual({ grpc: 9191, http: 8181 });
  expect(config.server.http_addr).toBe('0.0.0.0:8181');
  expect(config.server.grpc_addr).toBe('0.0.0.0:9191');
  expect(container.livenessProbe.httpGet).toEqual({ path: '/health', port: 'http' });
  expect(container.startupProbe.httpGet).toEqual({ path: '/health', port: 'http' });
  expect(container.readinessProbe.httpGet).toEqual({ path: '/ready', port: 'http' });

  // Non-root, read-only, no capabilities.
  expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001, seccompProfile: { type: 'RuntimeDefault' } });
  expect(container.securityContext).toEqual({
    runAsNonRoot: true,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
  });
  expect(pod.automountServiceAccountToken).toBe(false);

  // The config is the mounted ConfigMap, and every path Signalbox writes is on the writable volume.
  const env = Object.fromEntries(container.env.map((e: { name: string; value?: string }) => [e.name, e]));
  expect(env.SIGNALBOX_CONFIG.value).toBe('/etc/signalbox/config/signalbox.yaml');
  expect(env.POD_NAME.valueFrom.fieldRef.fieldPath).toBe('metadata.name');
  const mounts = Object.fromEntries(container.volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m]));
  expect(mounts.config).toEqual({ name: 'config', mountPath: '/etc/signalbox/config', readOnly: true });
  expect(mounts.data.mountPath).toBe('/var/lib/signalbox');
  expect(mounts.data.readOnly).toBeUndefined();
  expect(config.audit.path).toBe('/var/lib/signalbox/audit/rel-signalbox-abc12/decisions.jsonl');
  if (config.policy.service?.persist_file) expect(config.policy.service.persist_file).toMatch(/^\/var\/lib\/signalbox\//);

  // Workers match the CPU limit; a changed config rolls the pods.
  expect(deployment.spec.template.metadata.annotations['checksum/config']).toMatch(/^[0-9a-f]{64}$/);
  expect(deployment.spec.selector.matchLabels).toEqual({
    'app.kubernetes.io/name': 'signalbox',
    'app.kubernetes.io/instance': 'rel',
    'app.kubernetes.io/component': 'decision-service',
  });

  // The Service reaches the named container ports; gRPC is marked cleartext HTTP/2.
  const service = one(manifests, 'Service', 'rel-signalbox').object;
  expect(service.spec.selector).toEqual(deployment.spec.selector.matchLabels);
  expect(service.spec.ports).toEqual([
    { name: 'grpc', port: 9191, targetPort: 'grpc', protocol: 'TCP', appProtocol: 'kubernetes.io/h2c' },
    { name: 'http', port: 8181, targetPort: 'http', protocol: 'TCP', appProtocol: 'http' },
  ]);
  const pdb = one(manifests, 'PodDisruptionBudget', 'rel-signalbox').object;
  expect(pdb.spec.selector.matchLabels).toEqual(deployment.spec.selector.matchLabels);
  expect(pdb.spec.maxUnavailable).toBe(1);
}

describe('Helm chart deploy/helm/signalbox', () => {
  it('passes helm lint --strict, with the default values and with the example', async () => {
    const helm = tool('helm', 'install-helm.sh');
    for (const args of [[], ['-f', exampleValues]]) {
      const lint = await run(helm, ['lint', '--strict', chart, ...args]);
      expect(lint.code, `${lint.stdout}${lint.stderr}`).toBe(0);
      expect(lint.stdout).toContain('0 chart(s) failed');
    }
  });

  it('default values: a strictly valid Deployment, Services, PodDisruptionBudget and ConfigMap, as promised', async () => {
    const manifests = await render();
    expect(manifests.map((m) => `${m.kind}/${m.name}`).sort()).toEqual([
      'ConfigMap/rel-signalbox',
      'Deployment/rel-signalbox',
      'PodDisruptionBudget/rel-signalbox',
      'Service/rel-signalbox',
      'Service/rel-signalbox-headless',
    ]);
    const config = signalboxConfig(manifests);
    checkDeployment(manifests, config);
    // limits.cpu "2": two workers; the in-memory store; no Secret is mounted.
    expect(config.server.workers).toBe(2);
    expect(config.store.type).toBe('memory');
    const pod = one(manifests, 'Deployment', 'rel-signalbox').object.spec.template.spec;
    expect(pod.volumes.map((v: { name: string }) => v.name)).toEqual(['config', 'data']);
    expect(pod.volumes[1].emptyDir).toEqual({ sizeLimit: '1Gi' });
    expect(pod.serviceAccountName).toBe('default');
    expect(one(manifests, 'Service', 'rel-signalbox-headless').object.spec.clusterIP).toBe('None');
  });

  it('the Envoy example: Secrets mounted where the config points, Redis from a Secret, and an Envoy the real Envoy accepts', async () => {
    const manifests = await render(['-f', exampleValues]);
    const config = signalboxConfig(manifests, { SIGNALBOX_REDIS_URL: 'redis://redis:6379/0' });
    checkDeployment(manifests, config);
    const deployment = one(manifests, 'Deployment', 'rel-signalbox').object;
    expect(deployment.spec.replicas).toBe(3);
    const pod = deployment.spec.template.spec;
    const [container] = pod.containers;
    expect(container.image).toBe('registry.example.com/signalbox:0.1.0');
    // 1500m rounds up to two workers.
    expect(config.server.workers).toBe(2);
    expect(config.identity.issuer).toEqual(['https://idp.example.com/']);
    expect(config.audit.durability).toBe('fsync');

    const env = Object.fromEntries(container.env.map((e: { name: string }) => [e.name, e]));
    expect(config.store.type).toBe('redis');
    expect(env.SIGNALBOX_REDIS_URL.valueFrom.secretKeyRef).toEqual({ name: 'signalbox-redis', key: 'url' });
    expect(env.SIGNALBOX_VAULT_KEY.valueFrom.secretKeyRef).toEqual({ name: 'signalbox-vault-key', key: 'vault-key' });
    expect(env.SIGNALBOX_VAULT_OLD_KEYS.valueFrom.secretKeyRef).toEqual({ name: 'signalbox-vault-key', key: 'vault-old-keys', optional: true });

    // Whole-directory Secret mounts (no subPath: a rotated Secret reaches the pod), where the config reads.
    const mounts = Object.fromEntries(container.volumeMounts.map((m: { name: string }) => [m.name, m]));
    const volumes = Object.fromEntries(pod.volumes.map((v: { name: string }) => [v.name, v]));
    expect(mounts.jwks).toEqual({ name: 'jwks', mountPath: '/etc/signalbox/jwks', readOnly: true });
    expect(volumes.jwks.secret).toEqual({ secretName: 'signalbox-jwks', items: [{ key: 'jwks.json', path: 'jwks.json' }] });
    expect(config.identity.jwks_file).toBe('/etc/signalbox/jwks/jwks.json');
    expect(mounts.vault).toEqual({ name: 'vault', mountPath: '/etc/signalbox/vault', readOnly: true });
    expect(volumes.vault.secret.secretName).toBe('signalbox-vault');
    expect(config.vault.file).toBe('/etc/signalbox/vault/credentials.json');
    for (const mount of container.volumeMounts) expect(mount.subPath).toBeUndefined();

    expect(pod.serviceAccountName).toBe('rel-signalbox');
    expect(one(manifests, 'ServiceAccount', 'rel-signalbox').object.automountServiceAccountToken).toBe(false);

    // Envoy: non-root and read-only too, its config mounted, Signalbox reached through the headless Service.
    const envoy = one(manifests, 'Deployment', 'rel-signalbox-envoy').object;
    const envoyPod = envoy.spec.template.spec;
    expect(envoyPod.securityContext.runAsNonRoot).toBe(true);
    expect(envoyPod.containers[0].securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(envoyPod.volumes[0].configMap.name).toBe('rel-signalbox-envoy');
    expect(one(manifests, 'Service', 'rel-signalbox-envoy').object.spec.selector).toEqual(envoy.spec.selector.matchLabels);
    expect(envoy.spec.selector.matchLabels['app.kubernetes.io/component']).toBe('gateway');

    const envoyYaml = one(manifests, 'ConfigMap', 'rel-signalbox-envoy').object.data['envoy.yaml'] as string;
    expect(envoyYaml).toContain('address: rel-signalbox-headless.llm.svc.cluster.local, port_value: 9191');
    expect(envoyYaml).toContain('failure_mode_allow: false');
    const dir = await mkdtemp(join(tmpdir(), 'signalbox-chart-envoy-'));
    try {
      await writeFile(join(dir, 'envoy.yaml'), envoyYaml);
      const validation = await validateEnvoyFile(join(dir, 'envoy.yaml'));
      expect(validation.ok, validation.output).toBe(true);
      expect(validation.output.split('\n').filter((line) => /\]\[(warning|error|critical)\]/.test(line))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('workers follow the CPU limit unless set; a bundle server download is persisted on the volume; a PVC replaces the emptyDir', async () => {
    const cases: [string[], number][] = [
      [['--set', 'resources.limits.cpu=500m'], 1],
      [['--set', 'resources.limits.cpu=3'], 3],
      [['--set', 'resources.limits.cpu=2.5'], 3],
      [['--set', 'workers=5'], 5],
    ];
    for (const [args, workers] of cases) {
      expect(signalboxConfig(await render(args)).server.workers, args.join(' ')).toBe(workers);
    }
    const manifests = await render([
      '--set', 'config.policy.service.url=https://bundles.example.com/signalbox.tar.gz',
      '--set', 'data.persistentVolumeClaim=signalbox-audit',
      '--set', 'tls.secret=signalbox-tls',
      '--set', 'podDisruptionBudget.enabled=false',
    ]);
    const config = signalboxConfig(manifests);
    checkDeploymentWithoutPdb(manifests);
    expect(config.policy.service?.persist_file).toBe('/var/lib/signalbox/bundles/signalbox.tar.gz');
    const pod = one(manifests, 'Deployment', 'rel-signalbox').object.spec.template.spec;
    const volumes = Object.fromEntries(pod.volumes.map((v: { name: string }) => [v.name, v]));
    expect(volumes.data.persistentVolumeClaim).toEqual({ claimName: 'signalbox-audit' });
    expect(volumes.tls.secret).toEqual({ secretName: 'signalbox-tls' });
    expect(manifests.some((m) => m.kind === 'PodDisruptionBudget')).toBe(false);
  });

  it('the validator fails on an unknown field, a duplicated key and a bad name (the check can fail)', async () => {
    const validator = tool('k8s-validate', 'build-k8s-validate.sh');
    const bad: [string, RegExp][] = [
      ['apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {clusterIp: None}\n', /unknown field "spec.clusterIp"/],
      ['apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, name: b}\n', /key "name" already set in map/],
      ['apiVersion: v1\nkind: ConfigMap\nmetadata: {name: Not_A_Name}\n', /metadata.name "Not_A_Name"/],
      ['apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\nspec: {replicas: two}\n', /replicas/],
      ['apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: a}\n', /no kind "Widget"/],
    ];
    for (const [text, error] of bad) {
      const result = await run(validator, [], text);
      expect(result.code, text).toBe(1);
      expect(result.stderr, text).toMatch(error);
    }
  });
});

/** The Deployment checks for a rendering without a PodDisruptionBudget. */
function checkDeploymentWithoutPdb(manifests: Manifest[]): void {
  const deployment = one(manifests, 'Deployment', 'rel-signalbox').object;
  const [container] = deployment.spec.template.spec.containers;
  expect(container.readinessProbe.httpGet).toEqual({ path: '/ready', port: 'http' });
  expect(container.securityContext.readOnlyRootFilesystem).toBe(true);
}

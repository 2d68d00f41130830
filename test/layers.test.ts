/**
 * The import rule of src/, checked on every run: each folder of src/ is a room with a rank, a
 * file imports only from its own room or from a room of lower rank, and no import cycle exists
 * between files, not even a type-only one. Imports are read with the TypeScript compiler's own
 * parser (static, type-only, re-exports and dynamic `import()`), so what it sees is what tsc
 * resolves; no other tool is needed. README.md's "Layout" section lists the same rooms.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');

/**
 * Rooms, lowest first. Rooms of one rank never import each other. The stages (rank 1 to 3)
 * follow the pipeline: what inspect finds is priced and checked by the policy, whose result
 * names what enforce reserves.
 */
const ROOMS: Readonly<Record<string, number>> = {
  core: 0,
  types: 0,
  identity: 1,
  inspect: 1,
  audit: 1,
  ledger: 1,
  vault: 1,
  policy: 2,
  enforce: 3,
  decide: 4,
  bundles: 4,
  transport: 5,
  config: 6,
  app: 7,
  testing: 8,
  cli: 9,
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** Every relative module a file imports, resolved to a path under src/ (.js → .ts). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const found: string[] = [];
  const add = (specifier: string): void => {
    if (!specifier.startsWith('.')) return;
    const target = resolve(dirname(file), specifier);
    found.push(target.endsWith('.js') ? `${target.slice(0, -3)}.ts` : target);
  };
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      add(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
      add(node.arguments[0].text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      add(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true));
  return found;
}

const roomOf = (file: string): string => relative(SRC, file).split('/')[0]!;
const name = (file: string): string => relative(ROOT, file);

const FILES = sourceFiles(SRC);
const GRAPH = new Map(FILES.map((file) => [file, importsOf(file).filter((target) => target.startsWith(SRC + '/') && target.endsWith('.ts'))]));

/** Strongly connected components of more than one file, or a file importing itself (Tarjan). */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const connect = (node: string): void => {
    index.set(node, counter);
    low.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!index.has(next)) {
        connect(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, index.get(next)!));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) found.push(component.map(name).sort());
    }
  };
  for (const node of graph.keys()) if (!index.has(node)) connect(node);
  return found;
}

/** Imports into another room whose rank is not lower. */
function upwardImports(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const upward: string[] = [];
  for (const [file, targets] of graph) {
    const from = roomOf(file);
    for (const target of targets) {
      const to = roomOf(target);
      if (to !== from && !(ROOMS[to]! < ROOMS[from]!)) upward.push(`${name(file)} (${from}, rank ${ROOMS[from]}) imports ${name(target)} (${to}, rank ${ROOMS[to]})`);
    }
  }
  return upward;
}

describe('the layout of src/', () => {
  it('puts every file in a known room', () => {
    const unknown = FILES.filter((file) => !(roomOf(file) in ROOMS)).map(name);
    expect(unknown, 'files outside the rooms (or a new room missing from ROOMS)').toEqual([]);
  });

  it('imports only downward: from its own room or a room of lower rank', () => {
    expect(upwardImports(GRAPH)).toEqual([]);
  });

  it('has no import cycle, not even a type-only one', () => {
    expect(cycles(GRAPH)).toEqual([]);
  });

  it('finds a cycle and an upward import when there is one (the check itself works)', () => {
    const a = join(SRC, 'core', 'a.ts');
    const b = join(SRC, 'core', 'b.ts');
    expect(cycles(new Map([[a, [b]], [b, [a]]]))).toEqual([['src/core/a.ts', 'src/core/b.ts']]);
    expect(cycles(new Map([[a, [a]]]))).toEqual([['src/core/a.ts']]);
    expect(cycles(new Map([[a, [b]], [b, []]]))).toEqual([]);
    const decide = join(SRC, 'decide', 'decide.ts');
    const grpc = join(SRC, 'transport', 'grpc.ts');
    const verifier = join(SRC, 'identity', 'verifier.ts');
    const inspect = join(SRC, 'inspect', 'llm.ts');
    expect(upwardImports(new Map([[grpc, [decide]], [decide, [verifier]]]))).toEqual([]);
    expect(upwardImports(new Map([[decide, [grpc]]]))).toEqual(['src/decide/decide.ts (decide, rank 4) imports src/transport/grpc.ts (transport, rank 5)']);
    // Two stages of one rank do not import each other.
    expect(upwardImports(new Map([[verifier, [inspect]]]))).toHaveLength(1);
    // The parser sees type-only and dynamic imports.
    const seen = importsOf(join(SRC, 'testing', 'simulate.ts')).map(name);
    expect(seen).toContain('src/config/schema.ts'); // import type { SignalboxConfig }
  });

  it('is what README.md describes: every room is in its Layout table, and nothing else', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const layout = readme.split('\n## Layout')[1]!.split('\n## ')[0]!;
    const listed = new Set([...layout.matchAll(/`src\/([a-z-]+)\/`/g)].map((m) => m[1]!));
    const rooms = new Set(readdirSync(SRC).filter((entry) => statSync(join(SRC, entry)).isDirectory()));
    expect([...listed].sort()).toEqual([...rooms].sort());
  });
});

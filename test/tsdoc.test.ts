/**
 * The style rule "TSDoc on exports", checked on every run: each exported function, class, const,
 * let, interface, type or enum in src/ has a `/** ... *\/` comment directly above it (decorators
 * may sit in between). Re-exports (`export { ... } from`, `export *`) carry no declaration and are
 * exempt. Declarations are found with the TypeScript compiler's parser, so a line that merely
 * starts with `export` inside a template string is not mistaken for one.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..');
const SRC = join(ROOT, 'src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** Statement kinds that declare something; export lists and `export *` are not among them. */
function isDeclaration(node: ts.Statement): boolean {
  return (
    ts.isFunctionDeclaration(node) ||
    ts.isClassDeclaration(node) ||
    ts.isVariableStatement(node) ||
    ts.isInterfaceDeclaration(node) ||
    ts.isTypeAliasDeclaration(node) ||
    ts.isEnumDeclaration(node)
  );
}

/** The statement's `export` keyword (after any decorators), or undefined when it is not exported. */
function exportKeyword(node: ts.Statement): ts.Modifier | undefined {
  return ts.canHaveModifiers(node) ? ts.getModifiers(node)?.find((m) => m.kind === ts.SyntaxKind.ExportKeyword) : undefined;
}

/**
 * True when the last comment before the statement (and before its decorators, which belong to
 * the statement) is a `/**` block ending on the line just above: a blank line, a `//` line or a
 * plain `/*` comment in between does not count.
 */
function hasDocComment(text: string, node: ts.Statement): boolean {
  const last = ts.getLeadingCommentRanges(text, node.pos)?.at(-1);
  if (!last || last.kind !== ts.SyntaxKind.MultiLineCommentTrivia) return false;
  if (!text.startsWith('/**', last.pos) || text.startsWith('/**/', last.pos)) return false;
  const gap = text.slice(last.end, node.getStart());
  return /^[ \t]*(\r?\n[ \t]*)?$/.test(gap);
}

/** `name:line: first line of the declaration` for each undocumented export of one file. */
function undocumentedExports(name: string, text: string): string[] {
  const source = ts.createSourceFile(name, text, ts.ScriptTarget.Latest, true);
  return source.statements.flatMap((node) => {
    const keyword = exportKeyword(node);
    if (!keyword || !isDeclaration(node) || hasDocComment(text, node)) return [];
    // Reported at the `export` line, not at a decorator above it.
    const start = keyword.getStart();
    const line = source.getLineAndCharacterOfPosition(start).line + 1;
    const head = text.slice(start).split('\n')[0]!.trim();
    return [`${name}:${line}: ${head}`];
  });
}

describe('TSDoc on exports', () => {
  it('the check flags what it should, and only that', () => {
    const sample = [
      "export { a } from './a.js';",
      "export type { B } from './b.js';",
      "export * from './c.js';",
      '/** Documented. */',
      'export function documented(): void {}',
      'export function bare(): void {}',
      '/**',
      ' * Documented over',
      ' * several lines.',
      ' */',
      'export const several = 1;',
      '/* A plain block comment is not a doc comment. */',
      'export const plain = 2;',
      '/** A doc comment, then a blank line. */',
      '',
      'export interface Detached {}',
      '/** Doc comment followed by a line comment. */',
      '// note',
      'export type Noted = string;',
      '/** Decorated. */',
      '@sealed',
      'export class Decorated {}',
      '@sealed',
      'export class BareDecorated {}',
      'export abstract class Abstract {}',
      'export async function later(): Promise<void> {}',
      'export let mutable = 3;',
      'export enum Colour { Red }',
      'const local = 4;',
      'function helper(): void {}',
      'export { local, helper };',
      'const template = `',
      'export const notReal = 5;',
      '`;',
    ].join('\n');
    expect(undocumentedExports('sample.ts', sample)).toEqual([
      'sample.ts:6: export function bare(): void {}',
      'sample.ts:13: export const plain = 2;',
      'sample.ts:16: export interface Detached {}',
      'sample.ts:19: export type Noted = string;',
      'sample.ts:24: export class BareDecorated {}',
      'sample.ts:25: export abstract class Abstract {}',
      'sample.ts:26: export async function later(): Promise<void> {}',
      'sample.ts:27: export let mutable = 3;',
      'sample.ts:28: export enum Colour { Red }',
    ]);
  });

  it('every export in src/ has a doc comment', () => {
    const missing = sourceFiles(SRC).flatMap((file) => undocumentedExports(relative(ROOT, file), readFileSync(file, 'utf8')));
    expect(missing, `exports without a /** doc comment */:\n${missing.join('\n')}`).toEqual([]);
  });
});

import { readFileSync, readdirSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { TRACER_VERSION } from '../lib/tracing.constants.js';

/**
 * A package that imports something it does not declare works in this repo (the
 * devDependency is installed) and breaks in every user's application. This
 * check reads what `lib/` really imports and compares it with package.json.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface Manifest {
  version: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  devDependencies?: Record<string, string>;
}

interface ImportSite {
  file: string;
  specifier: string;
  /** `import()` at run time: loaded only when reached. */
  dynamic: boolean;
  /** `import type` / `export type`, or `import('x')` in a type position: erased from the JS. */
  typeOnly: boolean;
}

const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Manifest;

function libSources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return libSources(path);
    // The few plain JavaScript modules (the export worker) ship and import packages too.
    const source = entry.name.endsWith('.ts') || entry.name.endsWith('.js');
    return source && !entry.name.endsWith('.spec.ts') ? [path] : [];
  });
}

/** Every module specifier a source file names: static imports and re-exports, and `import()`. */
function collectImports(file: string, text: string): ImportSite[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const sites: ImportSite[] = [];
  const visit = (node: ts.Node): void => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier !== undefined &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      const typeOnly = ts.isImportDeclaration(node)
        ? (node.importClause?.isTypeOnly ?? false) || allNamedBindingsAreTypes(node)
        : node.isTypeOnly;
      sites.push({ file, specifier: node.moduleSpecifier.text, dynamic: false, typeOnly });
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] !== undefined &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      sites.push({ file, specifier: node.arguments[0].text, dynamic: true, typeOnly: false });
    } else if (
      ts.isImportTypeNode(node) &&
      ts.isLiteralTypeNode(node.argument) &&
      ts.isStringLiteral(node.argument.literal)
    ) {
      sites.push({ file, specifier: node.argument.literal.text, dynamic: false, typeOnly: true });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return sites;
}

function allNamedBindingsAreTypes(node: ts.ImportDeclaration): boolean {
  const clause = node.importClause;
  if (clause === undefined || clause.name !== undefined) return false;
  const bindings = clause.namedBindings;
  return (
    bindings !== undefined &&
    ts.isNamedImports(bindings) &&
    bindings.elements.length > 0 &&
    bindings.elements.every((element) => element.isTypeOnly)
  );
}

/** The package a bare specifier loads; undefined for relative paths and Node builtins. */
function packageName(specifier: string): string | undefined {
  if (specifier.startsWith('.') || specifier.startsWith('/')) return undefined;
  if (specifier.startsWith('node:')) return undefined;
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
  if (name === undefined || builtinModules.includes(name)) return undefined;
  return name;
}

const sites = libSources(join(ROOT, 'lib')).flatMap((file) =>
  collectImports(relative(ROOT, file), readFileSync(file, 'utf8')),
);
const external = sites.flatMap((site) => {
  const name = packageName(site.specifier);
  return name === undefined ? [] : [{ ...site, name }];
});

describe('package manifest', () => {
  describe('import collection (self-check)', () => {
    it('finds static, re-exported, type-only and dynamic imports, and ignores comments', () => {
      const found = collectImports(
        'x.ts',
        [
          "import { a } from '@scope/pkg/deep/file.js';",
          "import type { B } from 'types-only';",
          "import { type C } from 'inline-type';",
          "import 'side-effect';",
          "export { d } from './local.js';",
          '// import { e } from "in-a-comment";',
          "/** @example import { f } from 'in-tsdoc'; */",
          "const g = await import('lazy');",
          "const path = '/health/*'; // not a comment start for the parser",
          "type H = import('type-position').H;",
        ].join('\n'),
      );
      expect(
        found.map(({ specifier, dynamic, typeOnly }) => [specifier, dynamic, typeOnly]),
      ).toEqual([
        ['@scope/pkg/deep/file.js', false, false],
        ['types-only', false, true],
        ['inline-type', false, true],
        ['side-effect', false, false],
        ['./local.js', false, false],
        ['lazy', true, false],
        ['type-position', false, true],
      ]);
    });

    it.each([
      ['@nestjs/core/exceptions/exceptions-handler.js', '@nestjs/core'],
      ['@opentelemetry/api', '@opentelemetry/api'],
      ['rxjs/operators', 'rxjs'],
      ['reflect-metadata', 'reflect-metadata'],
      ['node:http', undefined],
      ['http', undefined],
      ['fs/promises', undefined],
      ['./tracing.constants.js', undefined],
      ['../sdk/tracer.js', undefined],
    ])('maps %p to the package %p', (specifier, name) => {
      expect(packageName(specifier)).toBe(name);
    });

    it('reads the real sources (it sees imports it must see)', () => {
      const names = new Set(external.map((site) => site.name));
      expect(names).toContain('@nestjs/common');
      expect(names).toContain('@opentelemetry/api');
      expect(external.some((s) => s.name === '@opentelemetry/exporter-zipkin' && s.dynamic)).toBe(
        true,
      );
      expect(sites.some((s) => s.file.endsWith('.spec.ts'))).toBe(false);
    });
  });

  it('declares every package lib/ imports in dependencies or peerDependencies', () => {
    const declared = new Set([
      ...Object.keys(manifest.dependencies ?? {}),
      ...Object.keys(manifest.peerDependencies ?? {}),
    ]);
    const undeclared = external
      .filter((site) => !declared.has(site.name))
      .map(
        (site) =>
          `${site.file}: '${site.specifier}' (${site.name}${
            manifest.devDependencies?.[site.name] ? ' is only a devDependency' : ' is not declared'
          })`,
      );
    expect(undeclared).toEqual([]);
  });

  it('loads optional peer dependencies only through import()', () => {
    const optional = Object.entries(manifest.peerDependenciesMeta ?? {})
      .filter(([, meta]) => meta.optional === true)
      .map(([name]) => name);
    expect(optional.length).toBeGreaterThan(0);
    // A static value import of an optional package fails at load time for users without it.
    const eager = external
      .filter((site) => optional.includes(site.name) && !site.dynamic && !site.typeOnly)
      .map((site) => `${site.file}: '${site.specifier}'`);
    expect(eager).toEqual([]);
  });

  it('keeps TRACER_VERSION equal to the package version', () => {
    expect(TRACER_VERSION).toBe(manifest.version);
  });
});

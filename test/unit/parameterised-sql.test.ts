import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import ts from 'typescript';

/**
 * Parameterised SQL only: every `.query(...)` / `.exec(...)` in lib/ passes its SQL as a literal. The
 * only interpolations allowed are the vetted ones below, each itself a literal without
 * substitutions; values always travel as $n parameters.
 */
const ROOT = resolve(__dirname, '..', '..');

/** File -> the expressions it may interpolate into SQL, or pass through as the SQL text. */
const VETTED: Record<string, readonly string[]> = {
  // A WHERE fragment of $n placeholders, and the HNSW indexes' names.
  'lib/adapters/store/search-strategies.ts': ['filter', 'HNSW_INDEX', 'BITS_HNSW_INDEX'],
  // The SqlClient implementations hand the caller's text to the driver.
  'lib/adapters/store/sql-client.ts': ['text', 'script'],
  // The soak's fault-injecting wrapper around a SqlClient hands the caller's text through,
  'lib/soak/faulty-sql-client.ts': ['text', 'script'],
  // and creates and drops its own schema, named from digits only (checked against /^ompf_soak_\d+_\d+$/).
  'lib/soak/in-process-target.ts': ['schema'],
  // The Lambda harness's cluster set-up: statements without parameters (ALTER SYSTEM, CREATE ROLE,
  // CREATE DATABASE) get values quoted by the driver's escapeLiteral / escapeIdentifier.
  'lib/lambda-local/loopback-database.ts': ['certFile', 'keyFile', 'password', 'name'],
  // Migration files shipped with the package (lib/adapters/store/migrations/*.sql).
  // and the ledger table, one of two literal names (MigrationLedger).
  'lib/adapters/store/migrator.ts': ['migration.sql', 'ledger'],
  // An index's schema, derived from its model id's hash and checked against /^ompf_[0-9a-f]{12}$/.
  'lib/adapters/store/index-catalogue.ts': ['schema'],
};

interface SqlCall {
  readonly file: string;
  readonly line: number;
  /** What is interpolated or passed instead of a literal; empty for a plain literal. */
  readonly dynamic: readonly string[];
}

function sqlCalls(file: string, source: string): SqlCall[] {
  const tree = ts.createSourceFile(file, source, ts.ScriptTarget.ES2022, true);
  const calls: SqlCall[] = [];
  const visit = (node: ts.Node): void => {
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      ['query', 'exec'].includes(node.expression.name.text) &&
      // /pattern/.exec(text) is a regular expression, not SQL.
      !ts.isRegularExpressionLiteral(node.expression.expression) &&
      node.arguments[0] !== undefined
    ) {
      const sql = node.arguments[0];
      const line = tree.getLineAndCharacterOfPosition(node.getStart()).line + 1;
      let dynamic: string[];
      if (ts.isStringLiteral(sql) || ts.isNoSubstitutionTemplateLiteral(sql)) dynamic = [];
      else if (ts.isTemplateExpression(sql)) dynamic = sql.templateSpans.map((s) => s.expression.getText());
      else dynamic = [sql.getText()];
      calls.push({ file, line, dynamic });
    }
    ts.forEachChild(node, visit);
  };
  visit(tree);
  return calls;
}

function tsFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return tsFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

function unvetted(calls: readonly SqlCall[]): string[] {
  return calls.flatMap((call) =>
    call.dynamic
      .filter((expression) => !(VETTED[call.file] ?? []).includes(expression))
      .map((expression) => `${call.file}:${call.line}: SQL built from \${${expression}}`),
  );
}

describe('parameterised SQL only', () => {
  const calls = tsFiles(join(ROOT, 'lib')).flatMap((path) =>
    sqlCalls(relative(ROOT, path).split('\\').join('/'), readFileSync(path, 'utf8')),
  );

  it('finds the SQL calls of lib/ (the scan is not vacuous)', () => {
    expect(calls.length).toBeGreaterThan(30);
    for (const file of ['search-strategies', 'augmentation', 'row-writes', 'sequenced-writes', 'row-reads']) {
      expect({ file, scanned: calls.some((c) => c.file === `lib/adapters/store/${file}.ts`) }).toEqual({
        file,
        scanned: true,
      });
    }
  });

  it('interpolates nothing into SQL but the vetted fragments', () => {
    expect(unvetted(calls)).toEqual([]);
  });

  it('keeps the vetted fragments of search-strategies.ts free of substitutions', () => {
    const source = readFileSync(join(ROOT, 'lib/adapters/store/search-strategies.ts'), 'utf8');
    const tree = ts.createSourceFile('search-strategies.ts', source, ts.ScriptTarget.ES2022, true);
    const initialisers = new Map<string, ts.Expression>();
    const visit = (node: ts.Node): void => {
      if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer) {
        initialisers.set(node.name.text, node.initializer);
      }
      ts.forEachChild(node, visit);
    };
    visit(tree);
    for (const name of ['filter', 'HNSW_INDEX', 'BITS_HNSW_INDEX']) {
      const value = initialisers.get(name);
      expect({ name, literal: value !== undefined && ts.isStringLiteralLike(value) }).toEqual({
        name,
        literal: true,
      });
    }
  });

  it('flags string-built SQL (the check itself works)', () => {
    const bad = [
      'db.query(`SELECT * FROM images WHERE key = ${key}`);',
      "db.exec('DELETE FROM images WHERE key = ' + key);",
      'db.query(sql, [key]);',
    ].join('\n');
    const good = "db.query('SELECT * FROM images WHERE key = $1', [key]); /x/.exec(`${text}`);";
    expect(unvetted(sqlCalls('lib/x.ts', bad))).toHaveLength(3);
    expect(unvetted(sqlCalls('lib/x.ts', good))).toEqual([]);
  });
});

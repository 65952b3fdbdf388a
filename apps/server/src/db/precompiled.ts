import type { Compilable, CompiledQuery } from 'kysely';
import type { Db } from './connection.ts';

const slotOf = Symbol('precompiled slot');
type Slot = { [slotOf]: number };

const isSlot = (value: unknown): value is Slot => typeof value === 'object' && value !== null && slotOf in value;

/**
 * A query whose SQL never changes, built and compiled once per database handle and then run with each
 * call's values: the hottest reads skip building and compiling Kysely's tree on every request.
 * `build` is given stand-ins for the values (compared or inserted as plain parameters, not spread
 * into lists); each stand-in's place among the parameters is filled with its value at every call.
 */
export function precompiled<Values extends unknown[], Row>(
  arity: Values['length'],
  build: (db: Db, ...values: Values) => Compilable<Row>,
): (db: Db, ...values: Values) => Promise<Row[]> {
  const compiledFor = new WeakMap<Db, CompiledQuery<Row>>();
  return async (db, ...values) => {
    let compiled = compiledFor.get(db);
    if (!compiled) {
      const slots = Array.from({ length: arity }, (_, i): Slot => ({ [slotOf]: i }));
      compiled = build(db, ...(slots as Values)).compile();
      compiledFor.set(db, compiled);
    }
    const parameters = compiled.parameters.map((parameter) =>
      isSlot(parameter) ? values[parameter[slotOf]] : parameter,
    );
    return (await db.executeQuery<Row>({ ...compiled, parameters })).rows;
  };
}

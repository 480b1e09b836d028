import { InvalidInputError } from '../core/errors.ts';

/**
 * A participant's reservations and actions as typed names, shared by both
 * sides (a module both services import, or a package): the participant
 * declares its handlers against them, the orchestrator calls them — and a
 * payload, body or result that does not match is a compile error on either
 * side. At run time each is only its name.
 *
 *   export const stock = reservationRef<{ productId: string; quantity: number }, { held: number }>('stock');
 *   catalog.participant.reservation(stock, { try, confirm, cancel }); // payload typed
 *   const { held } = await ctx.reserve('hold-stock', catalogClient, stock, hold);
 */
declare const TYPES: unique symbol;

export interface ReservationRef<P, R> {
  readonly kind: 'reservation';
  readonly resource: string;
  /** Type only: the payload and the try's result. */
  readonly [TYPES]?: { payload: P; result: R };
}

export interface ActionRef<B, R> {
  readonly kind: 'action';
  readonly name: string;
  /** Type only: the body and the result. */
  readonly [TYPES]?: { body: B; result: R };
}

/** Names of reservations and actions: a letter, then letters, digits, '_', '.', ':' or '-' (≤ 100). */
export const PARTICIPANT_NAME = /^[A-Za-z][A-Za-z0-9_.:-]{0,99}$/;

function checked(what: string, name: string): string {
  if (typeof name !== 'string' || !PARTICIPANT_NAME.test(name))
    throw new InvalidInputError(
      `${what} name ${JSON.stringify(name)} must be a letter, then up to 99 letters, digits, '_', '.', ':' or '-'.`,
    );
  return name;
}

/** A reservation's typed name: payload `P`, try's result `R`. */
export function reservationRef<P, R = unknown>(resource: string): ReservationRef<P, R> {
  return Object.freeze({ kind: 'reservation', resource: checked('reservation', resource) });
}

/** An action's typed name: body `B`, result `R`. */
export function actionRef<B, R = unknown>(name: string): ActionRef<B, R> {
  return Object.freeze({ kind: 'action', name: checked('action', name) });
}

/** The name behind a typed name or a plain string. */
export const resourceOf = (r: string | ReservationRef<unknown, unknown>): string =>
  typeof r === 'string' ? r : r.resource;
export const actionOf = (a: string | ActionRef<unknown, unknown>): string =>
  typeof a === 'string' ? a : a.name;

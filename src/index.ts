export {
  type Baton,
  type BatonOptions,
  type CompiledBatonOptions,
  channelsFor,
  compileBatonOptions,
  createBaton,
  type RecordedCaretaker,
  type RecordedCaretakerOptions,
  recordedCaretaker,
  type Startable,
  type StartOptions as BatonStartOptions,
} from './baton.ts';
export {
  Caretaker,
  type CaretakerReport,
  type CaretakerRunOptions,
  type ReconcileTarget,
} from './caretaker/caretaker.ts';
export { DIFFERENCE_CLASSES, type DifferenceClass } from './caretaker/classify.ts';
export type { EntityReport, Finding } from './caretaker/entity-reconciler.ts';
export type { FeedReport, IntegrityReport } from './caretaker/integrity.ts';
export type {
  InvariantDefinition,
  InvariantRemedy,
  InvariantReport,
} from './caretaker/invariants.ts';
export type { ReferencingRowsReport } from './caretaker/referencing-rows.ts';
export type { BackoffPolicy } from './core/backoff.ts';
export {
  AuthenticationError,
  BatonError,
  CompensationFailed,
  CursorExpiredError,
  InvalidInputError,
  LeaseLostError,
  NotFoundError,
  PayloadTooLargeError,
  ReferenceViolation,
  type ReferenceViolationReason,
  RetryableError,
  SagaTimeoutError,
  SchemaViolationError,
  TerminalError,
  TransactionRolledBackError,
  TransportError,
  UnsupportedServerError,
} from './core/errors.ts';
export type { BatonEvent, EventInput } from './core/event.ts';
export type { EventSchemas } from './core/event-schemas.ts';
export { createJsonLogger, type JsonLoggerOptions, REDACTED_PATHS } from './core/json-logger.ts';
export type { Logger } from './core/logger.ts';
export { noTelemetry, type Telemetry } from './core/telemetry.ts';
export { isUuid, uuidv7 } from './core/uuid-v7.ts';
export { visibleLines, visibleText } from './core/visible-text.ts';
export { createDashboard, type DashboardOptions } from './dashboard/dashboard-handler.ts';
export type { OperatorCredentials } from './dashboard/operator-sessions.ts';
export type { Database, Executor, QueryResult } from './db/executor.ts';
export {
  lastAppliedMigration,
  loadMigrations,
  MIN_SERVER_VERSION_NUM,
  type MigrateResult,
  type Migration,
  migrate,
} from './db/migrate.ts';
export {
  type Authentication,
  authHeaders,
  type ClientAuth,
  generateServiceKeys,
  type PeerKey,
  RequestVerifier,
  type ServerAuth,
} from './http/auth.ts';
export type { HttpRequestLike, HttpResponseLike } from './http/http-types.ts';
export { type RunningServer, serveHttp } from './http/node-server.ts';
export { createServiceHandler, type Route, type ServiceHandler } from './http/service-handler.ts';
export {
  PeerError,
  type SignedClient,
  type SignedClientOptions,
  signedClient,
} from './http/signed-client.ts';
export {
  Consumer,
  type ConsumerOptions,
  type EventHandler,
  type HandlerContext,
} from './messaging/consumer.ts';
export {
  type CursorReset,
  type CursorResetOptions,
  type CursorTarget,
  NoOldestRetainedError,
  type PlannedDataLoss,
  parsePosition,
  resetSubscriptionCursor,
} from './messaging/cursor-reset.ts';
export {
  type DeadLetterDetail,
  type DeadLetterList,
  type DeadLetterOptions,
  type DeadLetterSummary,
  discardDeadLetters,
  listDeadLetters,
  NotDeadLetterError,
  parseInboxId,
  type RetryResult,
  type RetryTarget,
  retryDeadLetters,
  showDeadLetter,
  UndecodableDeadLetterError,
} from './messaging/dead-letters.ts';
export { type DeadLetterMode, INBOX_STATES, type InboxState } from './messaging/inbox-states.ts';
export { Relay, type RelayOptions } from './messaging/relay.ts';
export {
  type DataLossRecord,
  listSubscriptions,
  type StuckCursor,
  SubscriptionPositionsNotInstalledError,
} from './messaging/subscription-status.ts';
export { type BatonMetrics, createBatonMetrics } from './metrics.ts';
export type {
  EntityDefinition,
  EntityLookup,
  EntityState,
  OnDeletePolicy,
  ReferenceDefinition,
} from './references/definitions.ts';
export { ON_DELETE_POLICIES } from './references/definitions.ts';
export type { DeleteOutcome, EntityOwner } from './references/entity-owner.ts';
export type { EntityReplication } from './references/entity-replication.ts';
export {
  type OwnerClient,
  type OwnerClientOptions,
  ownerClient,
} from './references/owner-client.ts';
export type { Reference } from './references/reference.ts';
export { REPLICA_STATES, type ReplicaState } from './references/replica-states.ts';
export {
  type ActionHandler,
  type BranchCall,
  Participant,
  type ReservationHandlers,
} from './sagas/participant.ts';
export {
  type ParticipantClient,
  type ParticipantClientOptions,
  participantClient,
  type ReservationClient,
} from './sagas/participant-client.ts';
export {
  type ActionRef,
  actionRef,
  type ReservationRef,
  reservationRef,
} from './sagas/participant-contract.ts';
export {
  abortSaga,
  isSagaState,
  listSagas,
  retrySaga,
  type SagaAdminOptions,
  type SagaChange,
  type SagaDetail,
  type SagaList,
  SagaStateError,
  type SagaStepDetail,
  type SagaSummary,
  SagasNotInstalledError,
  showSaga,
} from './sagas/saga-admin.ts';
export {
  type CallStepOptions,
  type CommandStepOptions,
  type LocalStepOptions,
  type RetryPolicy,
  type SagaContext,
  type SagaDefinition,
  type SagaFunction,
  type SagaOptions,
  saga,
} from './sagas/saga-definition.ts';
export {
  SAGA_STATES,
  type SagaState,
  STEP_STATES,
  type StepState,
} from './sagas/saga-states.ts';
export { SagaWorker, type SagaWorkerOptions } from './sagas/saga-worker.ts';
export {
  type CommandReply,
  commandReply,
  type SagaStatus,
  Sagas,
  type StartedSaga,
  type StartOptions,
  type WaitOptions,
} from './sagas/sagas.ts';
export type { ActiveSaga, SagasStatus, StuckSaga } from './status.ts';
export {
  type BatonStatus,
  type LastReconcile,
  type PendingDelete,
  type QuarantinedOrphan,
  type ReferencesStatus,
  readStatus,
  SchemaNotInstalledError,
  type SubscriptionStatus,
} from './status.ts';
export {
  createFeedHandler,
  type FeedHandler,
  type FeedHandlerOptions,
} from './transports/http-feed/feed-handler.ts';
export { type HttpFeedSourceOptions, httpFeedSource } from './transports/http-feed/feed-source.ts';
export type {
  EventSource,
  FetchedBatch,
  FetchRequest,
  IncomingItem,
  SequencedEvent,
  Transport,
} from './transports/transport.ts';

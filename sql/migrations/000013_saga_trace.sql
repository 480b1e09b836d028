-- The trace a saga was started in (W3C trace context: traceparent and
-- tracestate, as the OpenTelemetry SDK's propagator wrote them; NULL without
-- one): the worker that runs the saga later, in any process, continues that
-- trace, so a placed order is one trace from its request to its last step.
ALTER TABLE :schema.sagas ADD COLUMN trace jsonb;

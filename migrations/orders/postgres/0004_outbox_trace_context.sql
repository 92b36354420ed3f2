-- The W3C trace context (`traceparent`) of the request that wrote the event,
-- so the relay's publish and every consumer join that request's trace.
ALTER TABLE outbox ADD COLUMN trace_parent TEXT;

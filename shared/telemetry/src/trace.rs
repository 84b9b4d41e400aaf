//! W3C trace context in and out of jobs.
//!
//! Kubernetes changes carry no trace context, so the watcher starts a root
//! span per change; [`current`] captures it into the job (the JetStream
//! queue also sends it as the `traceparent` header). A worker makes the
//! job's span a child of it with [`set_parent`], so the watch event, the
//! publish, the claim, the handler's steps and its API writes are one trace.

use std::collections::HashMap;

use drover_shared::jobs::TraceContext;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The W3C header that carries the trace id and parent span id.
pub const TRACEPARENT: &str = "traceparent";
/// The W3C header for vendor state.
pub const TRACESTATE: &str = "tracestate";

/// The trace context of `span`, or `None` when it is not part of a trace
/// (telemetry not initialised, or the span is disabled).
pub fn of_span(span: &tracing::Span) -> Option<TraceContext> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut headers: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut headers);
    Some(TraceContext {
        traceparent: headers.remove(TRACEPARENT)?,
        tracestate: headers.remove(TRACESTATE).filter(|s| !s.is_empty()),
    })
}

/// The trace context of the current span.
pub fn current() -> Option<TraceContext> {
    of_span(&tracing::Span::current())
}

/// Makes `span` a child of the remote context `trace` (call before the span
/// is first entered). A malformed context is ignored: the span then starts
/// a trace of its own.
pub fn set_parent(span: &tracing::Span, trace: Option<&TraceContext>) {
    let Some(trace) = trace else { return };
    let mut headers: HashMap<String, String> = HashMap::new();
    headers.insert(TRACEPARENT.into(), trace.traceparent.clone());
    if let Some(state) = &trace.tracestate {
        headers.insert(TRACESTATE.into(), state.clone());
    }
    let parent = TraceContextPropagator::new().extract(&headers);
    if parent.span().span_context().is_valid() {
        // Fails only if the span was already entered; then it keeps its own trace.
        let _ = span.set_parent(parent);
    }
}

/// The trace id (32 hex digits) of a context, for logs and tests.
pub fn trace_id(trace: &TraceContext) -> Option<&str> {
    // traceparent = version "-" trace-id "-" parent-id "-" flags
    trace.traceparent.split('-').nth(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn a_child_span_in_another_process_shares_the_trace() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let carried = {
                let watch = tracing::info_span!("watch_event");
                let _e = watch.enter();
                current().expect("a span inside a trace has a context")
            };
            assert!(carried.traceparent.starts_with("00-"));
            let job = tracing::info_span!("job");
            set_parent(&job, Some(&carried));
            let inner = job.in_scope(current).expect("child has a context");
            assert_eq!(trace_id(&inner), trace_id(&carried));
            assert_ne!(inner.traceparent, carried.traceparent, "a new span id");
        });
        let _ = provider.force_flush();
        let spans = exporter.get_finished_spans().unwrap();
        let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
        assert!(names.contains(&"watch_event".to_string()), "{names:?}");
        let ids: std::collections::HashSet<_> =
            spans.iter().map(|s| s.span_context.trace_id()).collect();
        assert_eq!(ids.len(), 1, "one trace: {spans:?}");
    }

    #[test]
    fn no_subscriber_means_no_context_and_bad_context_is_ignored() {
        assert_eq!(current(), None);
        let span = tracing::Span::none();
        set_parent(
            &span,
            Some(&TraceContext {
                traceparent: "garbage".into(),
                tracestate: None,
            }),
        );
    }
}

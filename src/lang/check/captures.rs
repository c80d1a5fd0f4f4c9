//! Analyses against the captures of the traces they read: an analysis of Eq. 2 scores needs a
//! trace that captured `retrieval(reasoning)`, and Wu's Eq. 1 static score is refused on a trace
//! whose H_t is Eq. 2's. Caught here, at the parameter, rather than after the traces have run.
use super::*;

/// Whether a trace node's `capture` list has `retrieval(reasoning)`.
fn captures_reasoning(trace: &Node) -> bool {
    let Some(Value::List(caps)) = trace.arg("capture") else { return false };
    caps.iter().any(|c| match c {
        Value::Call { func, args, .. } if func == "retrieval" => {
            args.iter().any(|a| a.name == "method" && matches!(&a.value, Some(Value::Enum(m)) if m == "reasoning"))
        }
        _ => false,
    })
}

fn enum_of<'n>(n: &'n Node, param: &str) -> Option<&'n str> {
    match n.arg(param) {
        Some(Value::Enum(v)) => Some(v),
        _ => None,
    }
}

impl<'a> Checker<'a> {
    pub(super) fn check_captures(&mut self, nodes: &[Node]) {
        let traces: HashMap<&str, &Node> = nodes.iter().filter(|n| n.kind == Kind::Trace).map(|n| (n.name.as_str(), n)).collect();
        for n in nodes {
            // The parameter that asks for Eq. 2 scores, if any.
            let needs = match (n.kind, n.constructor.as_str()) {
                (Kind::Figure, "heatmap") if enum_of(n, "score") == Some("reasoning") => Some("score"),
                (Kind::Figure, "cca") if enum_of(n, "target") == Some("scores") => Some("target"),
                (Kind::Table, "regressor") => Some("trace"),
                (Kind::Heads, "static_heads") if enum_of(n, "method") == Some("mean_score") => Some("method"),
                _ => None,
            };
            let Some(Value::Ref { name: tname, .. }) = n.arg("trace") else { continue };
            let Some(trace) = traces.get(tname.as_str()) else { continue };
            let span = |p: &str| n.arg_entry(p).and_then(|a| a.span).unwrap_or(n.span);
            let reasoning = captures_reasoning(trace);
            if let Some(param) = needs {
                if !reasoning {
                    self.err(
                        Diagnostic::new(Code::InvalidValue, span(param), format!("{}: reads Eq. 2 scores, and trace `{tname}` does not capture them", n.name))
                            .label("needs `retrieval(reasoning)` in the trace")
                            .help(format!("add `retrieval(reasoning)` to the `capture` list of `{tname}`")),
                    );
                }
            } else if n.kind == Kind::Heads && n.constructor == "static_heads" && enum_of(n, "method") == Some("wu_mean") && reasoning {
                self.err(
                    Diagnostic::new(Code::InvalidValue, span("method"), format!("{}: `method: wu_mean` scores Eq. 1 copy-paste hits, and trace `{tname}` defines its heads by Eq. 2", n.name))
                        .label("Eq. 1's static score on an Eq. 2 trace")
                        .help("use `method: mean_score` (the mean Eq. 2 score) or `method: step_frequency`"),
                );
            }
        }
    }
}

//! Heads against model shapes: head ids, head counts and hidden-state layers checked against the model each one refers to.
use super::*;

impl<'a> Checker<'a> {
    pub(super) fn check_heads(&mut self, nodes: &[Node]) {
        let by_name: HashMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let mut shapes: HashMap<String, Option<ModelShape>> = HashMap::new();
        let mut reported: HashSet<(FileId, usize, usize)> = HashSet::new();
        let mut all: Vec<&Node> = vec![];
        for n in nodes {
            collect_nodes(n, &mut all);
        }
        // Shapes of every model node (reports unavailable models).
        for n in &all {
            if n.kind == Kind::Model {
                let s = self.model_shape(n);
                shapes.insert(n.name.clone(), s);
            }
        }
        let hc = HeadCx {
            by_name: &by_name,
            shapes: &shapes,
        };
        for n in &all {
            match (n.kind, n.constructor.as_str()) {
                (Kind::Heads, _) => {
                    // The node's own head counts against the model it selects from.
                    if let Some((mname, shape)) =
                        hc.source_model(&Value::Inline(Box::new((*n).clone())), 0)
                    {
                        for (count, span, what) in own_counts(n) {
                            if count as usize > shape.total()
                                && reported.insert((span.file, span.start, span.end))
                            {
                                self.err(count_error(count, span, what, &mname, shape));
                            }
                        }
                    }
                }
                (Kind::Trace, "generate") => {
                    let Some(Value::Ref { name: _, .. } | Value::Inline(_)) = n.arg("model") else {
                        continue;
                    };
                    let Some((mname, shape)) = hc.model_of(n.arg("model").expect("model")) else {
                        continue;
                    };
                    if let Some(Value::List(caps)) = n.arg("capture") {
                        for c in caps {
                            if let Value::Call { func, args, .. } = c {
                                if func == "hidden" {
                                    if let Some(Arg {
                                        value: Some(Value::Int(l)),
                                        span: Some(sp),
                                        ..
                                    }) = args.iter().find(|a| a.name == "layer")
                                    {
                                        if *l as usize >= shape.layers
                                            && reported.insert((sp.file, sp.start, sp.end))
                                        {
                                            self.err(
                                                Diagnostic::new(Code::HeadOutOfRange, *sp, format!("layer {l} does not exist in model `{mname}` ({} layers)", shape.layers))
                                                    .label(format!("layers are 0 to {}", shape.layers.saturating_sub(1)))
                                                    .help("use `hidden(final)` for the last layer's output after the final norm"),
                                            );
                                        }
                                    }
                                }
                            }
                        }
                    }
                    let Some(Value::List(ivs)) = n.arg("intervene") else {
                        continue;
                    };
                    let iv_span = n.arg_entry("intervene").and_then(|a| a.span);
                    for iv in ivs {
                        let Value::Call { func, args, .. } = iv else {
                            continue;
                        };
                        if func != "mask_heads" {
                            continue;
                        }
                        let Some(harg) = args.iter().find(|a| a.name == "heads") else {
                            continue;
                        };
                        let Some(hv) = &harg.value else { continue };
                        let use_span = harg.span.or(iv_span);
                        let mut explicit = vec![];
                        let mut counts = vec![];
                        hc.walk(hv, &mut explicit, &mut counts, 0);
                        for (layer, head, span) in explicit {
                            let Some(span) = span else { continue };
                            if (layer >= shape.layers || head >= shape.heads)
                                && reported.insert((span.file, span.start, span.end))
                            {
                                let label = if layer >= shape.layers {
                                    format!(
                                        "layer {layer} is out of range (0 to {})",
                                        shape.layers.saturating_sub(1)
                                    )
                                } else {
                                    format!(
                                        "head {head} is out of range (0 to {})",
                                        shape.heads.saturating_sub(1)
                                    )
                                };
                                let mut d = Diagnostic::new(Code::HeadOutOfRange, span, format!("head L{layer}H{head} does not exist in model `{mname}` ({} layers × {} heads)", shape.layers, shape.heads)).label(label);
                                if let Some(u) = use_span.filter(|u| {
                                    !(u.file == span.file
                                        && u.start <= span.start
                                        && span.end <= u.end)
                                }) {
                                    d = d.note(
                                        u,
                                        format!("masked in `{}`, which runs `{mname}`", n.name),
                                    );
                                }
                                self.err(d);
                            }
                        }
                        for (count, span, what) in counts {
                            if count as usize > shape.total()
                                && reported.insert((span.file, span.start, span.end))
                            {
                                let mut d = count_error(count, span, what, &mname, shape);
                                if let Some(u) = use_span.filter(|u| {
                                    !(u.file == span.file
                                        && u.start <= span.start
                                        && span.end <= u.end)
                                }) {
                                    d = d.note(
                                        u,
                                        format!("masked in `{}`, which runs `{mname}`", n.name),
                                    );
                                }
                                self.err(d);
                            }
                        }
                        if let Some((src_name, src)) = hc.source_model(hv, 0) {
                            if src_name != mname
                                && (src.layers > shape.layers || src.heads > shape.heads)
                            {
                                if let Some(u) = use_span {
                                    if reported.insert((u.file, u.start, u.end)) {
                                        self.err(
                                            Diagnostic::new(
                                                Code::HeadOutOfRange,
                                                u,
                                                format!("heads chosen on model `{src_name}` ({}×{}) do not all exist in model `{mname}` ({}×{})", src.layers, src.heads, shape.layers, shape.heads),
                                            )
                                            .label(format!("`{}` runs `{mname}`", n.name))
                                            .help("select the heads on the model you intervene on"),
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    pub(super) fn model_shape(&mut self, n: &Node) -> Option<ModelShape> {
        match n.constructor.as_str() {
            "random" => {
                let layers = n.arg("layers").and_then(Value::as_int)?;
                let heads = n.arg("heads").and_then(Value::as_int)?;
                Some(ModelShape {
                    layers: layers as usize,
                    heads: heads as usize,
                })
            }
            "gguf" | "hf" => {
                let entry = n.args.first()?;
                let (spec, path) = match entry.value.as_ref()? {
                    Value::ModelName(s) => (s.clone(), None),
                    Value::Path { written, resolved } => (written.clone(), Some(resolved.clone())),
                    _ => return None,
                };
                let decl = ModelDecl {
                    name: n.name.clone(),
                    constructor: n.constructor.clone(),
                    spec: spec.clone(),
                    path,
                };
                match self.shapes.shape(&decl) {
                    Ok(s) => s,
                    Err(msg) => {
                        if let Some(span) = entry.span {
                            self.err(
                                Diagnostic::new(
                                    Code::ModelUnavailable,
                                    span,
                                    format!("model `{spec}` cannot be read"),
                                )
                                .label("not found or not a model")
                                .help(msg),
                            );
                        }
                        None
                    }
                }
            }
            _ => None,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Dependency order
}

pub(super) fn collect_nodes<'n>(n: &'n Node, out: &mut Vec<&'n Node>) {
    out.push(n);
    pub(super) fn walk<'n>(v: &'n Value, out: &mut Vec<&'n Node>) {
        match v {
            Value::Inline(n) => collect_nodes(n, out),
            Value::Call { args, .. } => {
                for a in args {
                    if let Some(v) = &a.value {
                        walk(v, out);
                    }
                }
            }
            Value::List(items) => {
                for i in items {
                    walk(i, out);
                }
            }
            _ => {}
        }
    }
    for a in &n.args {
        if let Some(v) = &a.value {
            walk(v, out);
        }
    }
}

/// Head counts a heads node asks for itself: (count, span, description).
pub(super) fn own_counts(n: &Node) -> Vec<(i64, Span, String)> {
    let mut out = vec![];
    let param = match n.constructor.as_str() {
        "static_heads" => "top",
        "dynamic" => "k",
        "random" => "count",
        "top" => "n",
        _ => return out,
    };
    if let Some(Arg {
        value: Some(Value::Int(c)),
        span: Some(sp),
        ..
    }) = n.arg_entry(param)
    {
        out.push((*c, *sp, format!("`{param}: {c}`")));
    }
    out
}

pub(super) fn count_error(count: i64, span: Span, what: String, model: &str, shape: ModelShape) -> Diagnostic {
    Diagnostic::new(
        Code::HeadOutOfRange,
        span,
        format!("{what} asks for more heads than model `{model}` has"),
    )
    .label(format!("{count} > {} heads", shape.total()))
    .help(format!(
        "`{model}` has {} layers × {} heads = {} heads",
        shape.layers,
        shape.heads,
        shape.total()
    ))
}

pub(super) struct HeadCx<'h> {
    by_name: &'h HashMap<&'h str, &'h Node>,
    shapes: &'h HashMap<String, Option<ModelShape>>,
}

impl<'h> HeadCx<'h> {
    pub(super) fn node<'v>(&self, v: &'v Value) -> Option<&'v Node>
    where
        'h: 'v,
    {
        match v {
            Value::Ref { name, .. } => self.by_name.get(name.as_str()).copied(),
            Value::Inline(n) => Some(n),
            _ => None,
        }
    }

    /// Name and shape of a model value (a reference or inline model).
    pub(super) fn model_of(&self, v: &Value) -> Option<(String, ModelShape)> {
        let n = self.node(v)?;
        if n.kind != Kind::Model {
            return None;
        }
        self.shapes
            .get(&n.name)
            .copied()
            .flatten()
            .map(|s| (n.name.clone(), s))
    }

    /// The model a head set was selected on, if it is known.
    pub(super) fn source_model(&self, v: &Value, depth: usize) -> Option<(String, ModelShape)> {
        if depth > 32 {
            return None;
        }
        let n = self.node(v)?;
        match n.constructor.as_str() {
            "static_heads" | "dynamic" => {
                let t = self.node(n.arg("trace")?)?;
                self.model_of(t.arg("model")?)
            }
            "random" => self.model_of(n.arg("model")?),
            "top" => self.source_model(n.arg("heads")?, depth + 1),
            _ => None,
        }
    }

    /// Explicit heads and head counts that a heads value implies.
    pub(super) fn walk(
        &self,
        v: &Value,
        explicit: &mut Vec<(usize, usize, Option<Span>)>,
        counts: &mut Vec<(i64, Span, String)>,
        depth: usize,
    ) {
        if depth > 32 {
            return;
        }
        let Some(n) = self.node(v) else { return };
        counts.extend(own_counts(n));
        match n.constructor.as_str() {
            "explicit" => {
                if let Some(Value::List(hs)) = n.arg("heads") {
                    for h in hs {
                        if let Value::Head { layer, head, span } = h {
                            explicit.push((*layer, *head, *span));
                        }
                    }
                }
            }
            "top" => {
                if let Some(h) = n.arg("heads") {
                    self.walk(h, explicit, counts, depth + 1);
                }
            }
            _ => {}
        }
    }
}

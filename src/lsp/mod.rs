//! `rhx lsp`: a language server for `.rhx` files over stdio. The protocol (JSON-RPC framing,
//! the initialize handshake, shutdown) is `lsp-server`'s, the message types `lsp-types`'; this
//! module keeps the open documents and sends each request to the file that answers it:
//!
//! | capability | file | source of truth |
//! |---|---|---|
//! | diagnostics on open / change | `diagnostics.rs` | the checker (`lang::check_str_with`) and the op registry's refusals, as `rhx check` |
//! | hover | `hover.rs` | the schema (`FuncSpec` / `ParamSpec` docs), as `docs/LANGUAGE.md` |
//! | completion | `completion.rs` | the schema: constructors, parameters, enum values |
//! | go to definition | `definition.rs` | declarations of the document and its imports |
//! | formatting | `formatting.rs` | `lang::format_source`, as `rhx fmt` |
//!
//! Half-typed text does not parse; hover, completion and definition read an error-tolerant
//! token view (`scan.rs`), and positions are converted with UTF-16 columns (`position.rs`).
//! `textmate.rs` generates the syntax-colouring grammar for editors.
pub mod completion;
pub mod definition;
pub mod diagnostics;
pub mod formatting;
pub mod hover;
pub mod position;
pub mod scan;
pub mod textmate;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _, PublishDiagnostics,
};
use lsp_types::request::{Completion, Formatting, GotoDefinition, HoverRequest, Request as _};
use lsp_types::{
    CompletionOptions, CompletionParams, CompletionResponse, DidChangeTextDocumentParams, DidCloseTextDocumentParams,
    DidOpenTextDocumentParams, DocumentFormattingParams, GotoDefinitionParams, GotoDefinitionResponse, Hover,
    HoverContents, HoverParams, HoverProviderCapability, Location, MarkupContent, MarkupKind, OneOf,
    PublishDiagnosticsParams, ServerCapabilities, ServerInfo, TextDocumentSyncCapability, TextDocumentSyncKind, Url,
};

use crate::lang::{EngineShapes, ModelShapes, NoShapes};
use position::LineIndex;

#[derive(Debug, thiserror::Error)]
pub enum LspError {
    #[error("language server protocol: {0}")]
    Protocol(#[from] lsp_server::ProtocolError),
    #[error("language server i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot send to the client: the connection is closed")]
    Closed,
}

/// How the server checks documents.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Skip head checks against model shapes (no GGUF header or `config.json` is read), as
    /// `rhx check --no-models`.
    pub no_models: bool,
}

/// Serves on stdin/stdout until the client asks to shut down and exit.
pub fn serve_stdio(opts: Options) -> Result<(), LspError> {
    let (conn, io) = Connection::stdio();
    serve(conn, opts)?;
    io.join()?;
    Ok(())
}

/// What the server can do, sent in the `initialize` response.
pub fn capabilities() -> ServerCapabilities {
    ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some([":", "{", "(", "[", ",", "=", " "].map(String::from).to_vec()),
            ..Default::default()
        }),
        definition_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        ..Default::default()
    }
}

/// Serves one connection: the handshake, then messages until `shutdown` + `exit`.
pub fn serve(conn: Connection, opts: Options) -> Result<(), LspError> {
    let (id, _params) = conn.initialize_start()?;
    let result = serde_json::json!({
        "capabilities": capabilities(),
        "serverInfo": ServerInfo { name: "rhx".into(), version: Some(env!("CARGO_PKG_VERSION").into()) },
    });
    conn.initialize_finish(id, result)?;
    let mut server = Server { conn: &conn, opts, docs: HashMap::new() };
    for msg in &conn.receiver {
        match msg {
            Message::Request(req) => {
                if conn.handle_shutdown(&req)? {
                    return Ok(());
                }
                let resp = server.request(req);
                server.send(Message::Response(resp))?;
            }
            Message::Notification(n) => server.notification(n)?,
            Message::Response(_) => {}
        }
    }
    Ok(())
}

struct Server<'c> {
    conn: &'c Connection,
    opts: Options,
    /// Open documents: their text as the editor has it.
    docs: HashMap<Url, String>,
}

/// The file a document stands for: its path, or `untitled.rhx` in the working directory for a
/// buffer never saved (its imports then resolve against the working directory).
fn doc_path(uri: &Url) -> PathBuf {
    uri.to_file_path().unwrap_or_else(|_| PathBuf::from("untitled.rhx"))
}

impl Server<'_> {
    fn send(&self, msg: Message) -> Result<(), LspError> {
        self.conn.sender.send(msg).map_err(|_| LspError::Closed)
    }

    fn notification(&mut self, n: Notification) -> Result<(), LspError> {
        let uri = match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidOpenTextDocumentParams>(n.params) else { return Ok(()) };
                self.docs.insert(p.text_document.uri.clone(), p.text_document.text);
                p.text_document.uri
            }
            DidChangeTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidChangeTextDocumentParams>(n.params) else { return Ok(()) };
                // Full sync: the last change holds the whole text.
                let Some(change) = p.content_changes.into_iter().last() else { return Ok(()) };
                self.docs.insert(p.text_document.uri.clone(), change.text);
                p.text_document.uri
            }
            DidCloseTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidCloseTextDocumentParams>(n.params) else { return Ok(()) };
                self.docs.remove(&p.text_document.uri);
                return self.publish(p.text_document.uri, vec![]);
            }
            _ => return Ok(()),
        };
        let diags = self.check(&uri);
        self.publish(uri, diags)
    }

    fn check(&self, uri: &Url) -> Vec<lsp_types::Diagnostic> {
        let Some(text) = self.docs.get(uri) else { return vec![] };
        let path = doc_path(uri);
        let shapes: Box<dyn ModelShapes> = if self.opts.no_models { Box::new(NoShapes) } else { Box::new(EngineShapes::new()) };
        // A checker bug must not take the editor's server down with it: it is reported as a
        // diagnostic instead (and the panic message goes to stderr, the server's log).
        catch_unwind(AssertUnwindSafe(|| diagnostics::check_document(&path, text, shapes.as_ref()))).unwrap_or_else(|_| {
            vec![lsp_types::Diagnostic {
                severity: Some(lsp_types::DiagnosticSeverity::ERROR),
                source: Some("rhx".into()),
                message: "internal error: the rhx checker panicked on this text (see the server's log); please report it".into(),
                ..Default::default()
            }]
        })
    }

    fn publish(&self, uri: Url, diagnostics: Vec<lsp_types::Diagnostic>) -> Result<(), LspError> {
        let params = PublishDiagnosticsParams { uri, diagnostics, version: None };
        self.send(Message::Notification(Notification::new(PublishDiagnostics::METHOD.into(), params)))
    }

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        let result = match req.method.as_str() {
            HoverRequest::METHOD => self.with_params(req, |s, p: HoverParams| s.hover(p)),
            Completion::METHOD => self.with_params(req, |s, p: CompletionParams| s.completion(p)),
            GotoDefinition::METHOD => self.with_params(req, |s, p: GotoDefinitionParams| s.definition(p)),
            Formatting::METHOD => self.with_params(req, |s, p: DocumentFormattingParams| s.formatting(p)),
            m => Err((ErrorCode::MethodNotFound, format!("rhx lsp does not handle `{m}`"))),
        };
        match result {
            Ok(v) => Response { id, result: Some(v), error: None },
            Err((code, msg)) => Response::new_err(id, code as i32, msg),
        }
    }

    fn with_params<P: serde::de::DeserializeOwned, R: serde::Serialize>(
        &self,
        req: Request,
        f: impl FnOnce(&Self, P) -> Result<R, (ErrorCode, String)>,
    ) -> Result<serde_json::Value, (ErrorCode, String)> {
        let p = serde_json::from_value(req.params).map_err(|e| (ErrorCode::InvalidParams, format!("{}: {e}", req.method)))?;
        let r = catch_unwind(AssertUnwindSafe(|| f(self, p)))
            .map_err(|_| (ErrorCode::InternalError, format!("{} panicked (see the server's log)", req.method)))??;
        serde_json::to_value(r).map_err(|e| (ErrorCode::InternalError, e.to_string()))
    }

    fn text(&self, uri: &Url) -> Result<&str, (ErrorCode, String)> {
        self.docs.get(uri).map(String::as_str).ok_or_else(|| (ErrorCode::InvalidParams, format!("{uri} is not open")))
    }

    fn hover(&self, p: HoverParams) -> Result<Option<Hover>, (ErrorCode, String)> {
        let uri = &p.text_document_position_params.text_document.uri;
        let text = self.text(uri)?;
        let index = LineIndex::new(text);
        let offset = index.offset(p.text_document_position_params.position);
        Ok(hover::hover(&doc_path(uri), text, offset).map(|(value, (s, e))| Hover {
            contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value }),
            range: Some(index.range(s, e)),
        }))
    }

    fn completion(&self, p: CompletionParams) -> Result<Option<CompletionResponse>, (ErrorCode, String)> {
        let uri = &p.text_document_position.text_document.uri;
        let text = self.text(uri)?;
        let offset = LineIndex::new(text).offset(p.text_document_position.position);
        Ok(Some(CompletionResponse::Array(completion::complete(&doc_path(uri), text, offset))))
    }

    fn definition(&self, p: GotoDefinitionParams) -> Result<Option<GotoDefinitionResponse>, (ErrorCode, String)> {
        let uri = &p.text_document_position_params.text_document.uri;
        let text = self.text(uri)?;
        let offset = LineIndex::new(text).offset(p.text_document_position_params.position);
        let Some(found) = definition::definition(&doc_path(uri), text, offset) else { return Ok(None) };
        let target = std::path::absolute(&found.path).unwrap_or(found.path.clone());
        let uri = Url::from_file_path(&target).map_err(|_| (ErrorCode::InternalError, format!("no URI for {}", target.display())))?;
        let range = LineIndex::new(&found.text).range(found.decl.start, found.decl.end);
        Ok(Some(GotoDefinitionResponse::Scalar(Location { uri, range })))
    }

    fn formatting(&self, p: DocumentFormattingParams) -> Result<Option<Vec<lsp_types::TextEdit>>, (ErrorCode, String)> {
        let text = self.text(&p.text_document.uri)?;
        formatting::format(text).map(Some).map_err(|m| (ErrorCode::RequestFailed, m))
    }
}

//! `rhx lsp`: the language server for `.rhx` files (stdio), for editors.
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
#[command(after_help = "The server speaks the Language Server Protocol on stdin/stdout; an editor starts it.\n\
It gives `rhx check`'s errors as you type, hover docs and completion from the schema\n\
(the text of docs/LANGUAGE.md), go-to-definition (also into imported files) and `rhx fmt`.\n\n\
EXAMPLES:\n  \
Neovim (init.lua):\n    \
vim.filetype.add({ extension = { rhx = 'rhx' } })\n    \
vim.api.nvim_create_autocmd('FileType', { pattern = 'rhx', callback = function()\n      \
vim.lsp.start({ name = 'rhx', cmd = { 'rhx', 'lsp' }, root_dir = vim.fs.root(0, '.git') })\n    \
end })\n  \
Helix (~/.config/helix/languages.toml):\n    \
[language-server.rhx]\n    \
command = \"rhx\"\n    \
args = [\"lsp\"]\n    \
[[language]]\n    \
name = \"rhx\"\n    \
scope = \"source.rhx\"\n    \
file-types = [\"rhx\"]\n    \
comment-token = \"#\"\n    \
language-servers = [\"rhx\"]\n  \
VS Code: link editors/ into ~/.vscode/extensions/rhx (syntax colouring), and point a generic\n  \
LSP client extension at the command `rhx lsp`.\n  \
rhx lsp --no-models      # no head checks against model files (nothing but the .rhx files is read)")]
pub struct LspArgs {
    /// Skip checks of heads against model shapes, as `rhx check --no-models` (no GGUF header or config.json is read)
    #[arg(long)]
    pub no_models: bool,
}

pub fn run(a: LspArgs) -> Result<ExitCode> {
    crate::lsp::serve_stdio(crate::lsp::Options { no_models: a.no_models })?;
    Ok(ExitCode::SUCCESS)
}

// qwrun tokenize / detokenize with the tokenizer stored in an artifact.
#include <iostream>

#include "cli/commands.h"
#include "cli/model_loader.h"
#include "tokenizer/tokenize_cli.h"

namespace qw::cli {

Runner add_tokenize_commands(CLI::App& app) {
  struct Opts {
    std::string file, text;
    bool spaces = false, no_special = false, show = false, skip_special = false;
  };
  auto o = std::make_shared<Opts>();
  auto* t = app.add_subcommand("tokenize", "Print the token ids of a text");
  t->add_option("artifact", o->file, "Compiled model (.qwart)")->required()->check(CLI::ExistingFile);
  t->add_option("text", o->text, "Text to encode")->required();
  t->add_flag("--ids", o->spaces, "Space-separated ids instead of a JSON array");
  t->add_flag("--no-special", o->no_special, "Encode special-token text as plain text");
  t->add_flag("--show-tokens", o->show, "Also print one id<TAB>token line per token");
  auto* d = app.add_subcommand("detokenize", "Print the text of token ids");
  d->add_option("artifact", o->file, "Compiled model (.qwart)")->required()->check(CLI::ExistingFile);
  d->add_option("ids", o->text, "Ids: a JSON array or space-separated")->required();
  d->add_flag("--skip-special", o->skip_special, "Drop special tokens");
  return [o, t, d] {
    auto a = Artifact::open(o->file);
    if (!a.ok()) return fail(a.status().message());
    auto tok = load_tokenizer(*a);
    if (!tok.ok()) return fail(tok.status().message());
    if (*t) {
      TokenizeCliOptions opt;
      opt.format = o->spaces ? IdsFormat::kSpaces : IdsFormat::kJson;
      opt.allow_special = !o->no_special;
      opt.show_tokens = o->show;
      print_tokenize(*tok, o->text, opt, std::cout);
      return 0;
    }
    (void)d;
    Status s = print_detokenize(*tok, o->text, o->skip_special, std::cout);
    return s.ok() ? 0 : fail(s.message());
  };
}

}  // namespace qw::cli

// qwrun: runs compiled .qwart artifacts.
#include <map>

#include "cli/commands.h"
#include "qw_version.h"

int main(int argc, char** argv) {
  CLI::App app{"qwrun " QW_VERSION " - runs compiled Qwen2 artifacts (.qwart)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", QW_VERSION);
  std::map<std::string, qw::cli::Runner> runners;
  runners["generate"] = qw::cli::add_generate_command(app);
  runners["chat"] = qw::cli::add_chat_command(app);
  runners["tokenize"] = runners["detokenize"] = qw::cli::add_tokenize_commands(app);
  runners["serve"] = qw::cli::add_serve_command(app);
  runners["bench"] = qw::cli::add_bench_command(app);
  CLI11_PARSE(app, argc, argv);
  for (CLI::App* sub : app.get_subcommands()) {
    auto it = runners.find(sub->get_name());
    if (it != runners.end()) return it->second();
  }
  return 2;
}

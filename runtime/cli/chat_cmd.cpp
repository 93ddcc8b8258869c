// qwrun chat: an interactive ChatML conversation at the terminal. Ctrl-C stops the reply
// being written, not the program; Ctrl-D or /exit leaves.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "cli/commands.h"
#include "cli/sampling_flags.h"

namespace qw::cli {

namespace {
std::atomic<bool> g_stop_reply{false};
void on_sigint(int) { g_stop_reply = true; }
}  // namespace

Runner add_chat_command(CLI::App& app) {
  struct Opts {
    std::string file;
    SamplingFlags s;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("chat", "Chat with the model at the terminal");
  c->add_option("artifact", o->file, "Compiled model (.qwart)")->required()->check(CLI::ExistingFile);
  o->s.max_tokens = 1024;
  o->s.add_to(c);
  return [o] {
    auto m = load_model(o->file, o->s.load);
    if (!m.ok()) return fail(m.status().message());
    LoadedModel& model = **m;
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, nullptr);  // no SA_RESTART: Ctrl-C at the prompt just redraws
    nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
    if (!o->s.system.empty()) msgs.push_back({{"role", "system"}, {"content", o->s.system}});
    std::fprintf(stderr, "qwrun chat: %s on %s. Ctrl-C stops a reply; Ctrl-D or /exit quits.\n",
                 o->file.c_str(), model.executor->device_name().c_str());
    std::string line;
    for (;;) {
      std::fputs("\n> ", stdout);
      std::fflush(stdout);
      g_stop_reply = false;
      if (!std::getline(std::cin, line)) {
        if (g_stop_reply) {  // interrupted at the prompt: keep going
          std::cin.clear();
          continue;
        }
        break;
      }
      if (line == "/exit" || line == "/quit") break;
      if (line.empty()) continue;
      msgs.push_back({{"role", "user"}, {"content", line}});
      auto text = model.tokenizer.render_chat(msgs, nlohmann::ordered_json::array(), true);
      if (!text.ok()) return fail(text.status().message());
      GenerateRequest req = o->s.request_for(model);
      req.prompt = model.tokenizer.encode(*text, true);
      req.reuse_cached_prefix = true;  // earlier turns' KV stays in the prefix cache
      StreamDecoder dec(model.tokenizer);
      auto r = generate(
          *model.executor, req, [&](int32_t id) { return dec.push(id); },
          [](const TokenEvent& ev) {
            std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
            std::fflush(stdout);
          },
          &g_stop_reply);
      if (!r.ok()) {
        std::fprintf(stderr, "\nqwrun: error: %s\n", r.status().message().c_str());
        msgs.erase(msgs.end() - 1);
        continue;
      }
      const std::string tail = dec.flush();  // bytes of a character cut off by the last token
      std::fwrite(tail.data(), 1, tail.size(), stdout);
      if (r->finish == FinishReason::Cancelled) std::fputs(" [stopped]", stdout);
      std::fputc('\n', stdout);
      msgs.push_back({{"role", "assistant"}, {"content", r->text}});
    }
    return 0;
  };
}

}  // namespace qw::cli

// qwrun generate: one prompt in, text streamed to stdout, timing on stderr.
#include <atomic>
#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "cli/sampling_flags.h"

namespace qw::cli {

namespace {
std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }
}  // namespace

int fail(const std::string& message) {
  std::fprintf(stderr, "qwrun: error: %s\n", message.c_str());
  return 1;
}

Runner add_generate_command(CLI::App& app) {
  struct Opts {
    std::string file, prompt;
    bool chat = false;
    SamplingFlags s;
  };
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("generate", "Generate text from a prompt");
  c->add_option("artifact", o->file, "Compiled model (.qwart)")->required()->check(CLI::ExistingFile);
  c->add_option("-p,--prompt", o->prompt, "Prompt text")->required();
  c->add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template (ChatML)");
  o->s.add_to(c);
  return [o] {
    auto m = load_model(o->file, o->s.load);
    if (!m.ok()) return fail(m.status().message());
    LoadedModel& model = **m;
    GenerateRequest req = o->s.request_for(model);
    if (o->chat) {
      nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
      if (!o->s.system.empty()) msgs.push_back({{"role", "system"}, {"content", o->s.system}});
      msgs.push_back({{"role", "user"}, {"content", o->prompt}});
      auto text = model.tokenizer.render_chat(msgs, nlohmann::ordered_json::array(), true);
      if (!text.ok()) return fail(text.status().message());
      req.prompt = model.tokenizer.encode(*text, true);
    } else {
      req.prompt = model.tokenizer.encode(o->prompt, true);
    }
    std::signal(SIGINT, on_sigint);
    StreamDecoder dec(model.tokenizer);
    auto r = generate(
        *model.executor, req, [&](int32_t id) { return dec.push(id); },
        [](const TokenEvent& ev) {
          std::fwrite(ev.text.data(), 1, ev.text.size(), stdout);
          std::fflush(stdout);
        },
        &g_interrupted);
    const std::string tail = dec.flush();  // bytes of a character cut off by the last token
    std::fwrite(tail.data(), 1, tail.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);  // before the timing line on stderr, which shares a terminal/pipe
    if (!r.ok()) return fail(r.status().message());
    const double dt = r->decode_seconds;
    std::fprintf(stderr,
                 "qwrun: %s | load %.2f s | prompt %zu tok in %.3f s | %zu tok in %.3f s (%.1f "
                 "tok/s) | finish: %s\n",
                 model.executor->device_name().c_str(), model.load_seconds, req.prompt.size(),
                 r->prefill_seconds, r->tokens.size(), dt,
                 dt > 0 ? double(r->tokens.size()) / dt : 0.0,
                 std::string(finish_reason_name(r->finish)).c_str());
    return 0;
  };
}

}  // namespace qw::cli

// qwrun subcommands: each registers its options on the CLI and runs after parsing.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace qw::cli {

using Runner = std::function<int()>;
Runner add_generate_command(CLI::App& app);
Runner add_chat_command(CLI::App& app);
Runner add_tokenize_commands(CLI::App& app);
Runner add_serve_command(CLI::App& app);
Runner add_bench_command(CLI::App& app);

int fail(const std::string& message);

}  // namespace qw::cli

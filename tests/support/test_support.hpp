#pragma once

// Helpers shared by every test executable: a per-test temporary directory,
// running a real process with a deadline, and waiting on a condition.

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace metalsync::test {

// A fresh directory under $TMPDIR (or /tmp). Removed when the test passed,
// kept (and its path printed) when any check in the process failed, or when
// METALSYNC_KEEP_TMP=1.
class TempDir {
public:
    explicit TempDir(const std::string& label = "test");
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    [[nodiscard]] const std::filesystem::path& path() const { return m_path; }
    [[nodiscard]] std::filesystem::path operator/(const std::string& name) const { return m_path / name; }

private:
    std::filesystem::path m_path;
};

struct CommandResult {
    int exit_code = -1;   // -1 when killed at the deadline or by a signal
    std::string out;
    std::string err;
    bool timed_out = false;
};

// Runs argv[0] (searched on PATH) with the given arguments; never a shell.
CommandResult run(const std::vector<std::string>& argv,
                  const std::optional<std::filesystem::path>& cwd = std::nullopt,
                  std::chrono::milliseconds deadline = std::chrono::seconds(120),
                  const std::vector<std::string>& extra_env = {});

// Runs a command and fails the current test when it exits non-zero.
std::string run_ok(const std::vector<std::string>& argv,
                   const std::optional<std::filesystem::path>& cwd = std::nullopt);

// Polls `condition` every 20 ms until it holds or the deadline passes.
bool wait_until(const std::function<bool()>& condition,
                std::chrono::milliseconds deadline = std::chrono::seconds(30));

void write_file(const std::filesystem::path& path, const std::string& content);
std::string read_file(const std::filesystem::path& path);

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port();

// Paths known at build time.
std::filesystem::path source_dir();
std::filesystem::path metalsync_binary();

// Set by the test main when any check failed, so TempDir keeps its files.
bool any_failure();

} // namespace metalsync::test

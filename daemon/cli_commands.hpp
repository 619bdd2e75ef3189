#pragma once

#include <string>

namespace metalsync {

// Exit codes shared by the commands (documented in the README).
inline constexpr int k_exit_ok = 0;          // valid / no changes
inline constexpr int k_exit_findings = 1;    // invalid / changes planned
inline constexpr int k_exit_error = 2;       // could not run

struct ValidateOptions {
    std::string path;
    std::string output = "text";
};

struct PlanOptions {
    std::string repo;
    std::string config;
    std::string state_dir;
    std::string output = "text";
};

int run_validate(const ValidateOptions& options);
int run_plan(const PlanOptions& options);

} // namespace metalsync

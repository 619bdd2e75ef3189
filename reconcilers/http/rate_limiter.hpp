#pragma once

// Ironic's request budget (limits.ironicQPS): a token bucket shared by every
// IronicClient made from one IronicConnection, so the daemon's observation
// and all executor workers draw on one rate and the limit holds per HTTP
// request, not per action. Thread-safe.
//
// Burst: max(2, 50 ms of the rate) tokens. Any window of W seconds sees at
// most rate * W + burst requests. A burst of 1 would lose rate every time a
// waiter is woken a little late with the bucket already full; two tokens
// (more above 40 requests/s) absorb that scheduling jitter while keeping the
// pacing close to even.
//
// Waiters are served first come, first served, so no worker (or the
// observer) is starved by the others; the executor's admission of a new
// action takes its turn in the same line (try_prepay). A wait ends with a
// token, at the caller's deadline, or at interrupt() (shutdown).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

namespace metalsync {

class RateLimiter {
  public:
    using Clock = std::chrono::steady_clock;

    enum class Outcome { granted, timed_out, interrupted };

    // `burst` unset: the default above, following the rate when it changes.
    explicit RateLimiter(double requests_per_second, std::optional<double> burst = std::nullopt);
    RateLimiter(const RateLimiter&) = delete;
    RateLimiter& operator=(const RateLimiter&) = delete;

    // Takes effect for waiters at once (config reload, a Policy tightening).
    void set_rate(double requests_per_second);
    [[nodiscard]] double rate() const;
    [[nodiscard]] double burst() const;

    // One token for one request: waits behind requests already waiting. A
    // token this thread prepaid (try_prepay) is used first, without waiting.
    Outcome acquire(Clock::time_point deadline);

    // The executor's admission of an action, without blocking: takes a token
    // when one is free and it is the calling thread's turn, and credits it to
    // that thread, whose next acquire() uses it. So an action is charged for
    // its requests and not once more for being started. When it is not yet
    // its turn, the thread keeps a place in line (a reservation) and asks
    // again later (time_until_free); forfeit_prepaid() gives the place up.
    bool try_prepay();
    // Drops the calling thread's unused prepaid token (an action that sent no
    // request has still spent one) and its place in line, if any.
    void forfeit_prepaid();
    // How long until the calling thread's try_prepay() could succeed,
    // counting those ahead of it in line; zero when it would succeed now.
    [[nodiscard]] Clock::duration time_until_free() const;

    // Every current and later acquire() returns `interrupted` until resume().
    void interrupt();
    void resume();

    // Tokens handed out so far (requests, and prepaid admissions).
    [[nodiscard]] std::uint64_t tokens_taken() const;

    static double default_burst(double requests_per_second);

  private:
    void refill_locked(Clock::time_point now);
    void leave_queue_locked(std::uint64_t ticket);

    mutable std::mutex m_mutex;
    std::condition_variable m_cv;
    double m_rate;
    double m_burst;
    bool m_auto_burst;
    double m_tokens;
    Clock::time_point m_last_refill;
    std::deque<std::uint64_t> m_waiting; // tickets, oldest first
    std::uint64_t m_next_ticket = 0;
    std::set<std::thread::id> m_prepaid;
    std::map<std::thread::id, std::uint64_t> m_reserved; // try_prepay's places in m_waiting
    bool m_interrupted = false;
    std::uint64_t m_taken = 0;
};

} // namespace metalsync

#include "reconcilers/http/rate_limiter.hpp"

#include <algorithm>
#include <cmath>

namespace metalsync {
namespace {

constexpr double k_min_rate = 0.001; // a zero rate would wait forever; the config refuses it anyway

double sane_rate(double requests_per_second)
{
    return std::isfinite(requests_per_second) ? std::max(k_min_rate, requests_per_second) : 1e9;
}

RateLimiter::Clock::duration as_duration(double s)
{
    return std::chrono::duration_cast<RateLimiter::Clock::duration>(std::chrono::duration<double>(std::max(0.0, s)));
}

} // namespace

double RateLimiter::default_burst(double requests_per_second)
{
    return std::max(2.0, sane_rate(requests_per_second) * 0.05);
}

RateLimiter::RateLimiter(double requests_per_second, std::optional<double> burst)
    : m_rate(sane_rate(requests_per_second)), m_burst(burst ? std::max(1.0, *burst) : default_burst(m_rate)),
      m_auto_burst(!burst), m_tokens(m_burst), m_last_refill(Clock::now())
{
}

void RateLimiter::refill_locked(Clock::time_point now)
{
    const double elapsed = std::chrono::duration<double>(now - m_last_refill).count();
    if (elapsed > 0) {
        m_tokens = std::min(m_burst, m_tokens + elapsed * m_rate);
        m_last_refill = now;
    }
}

void RateLimiter::set_rate(double requests_per_second)
{
    std::lock_guard lock(m_mutex);
    refill_locked(Clock::now()); // what accrued so far, at the old rate
    m_rate = sane_rate(requests_per_second);
    if (m_auto_burst) {
        m_burst = default_burst(m_rate);
    }
    m_tokens = std::min(m_tokens, m_burst);
    m_cv.notify_all();
}

double RateLimiter::rate() const
{
    std::lock_guard lock(m_mutex);
    return m_rate;
}

double RateLimiter::burst() const
{
    std::lock_guard lock(m_mutex);
    return m_burst;
}

void RateLimiter::leave_queue_locked(std::uint64_t ticket)
{
    if (auto it = std::find(m_waiting.begin(), m_waiting.end(), ticket); it != m_waiting.end()) {
        m_waiting.erase(it);
    }
    m_cv.notify_all(); // the next in line may be at the front now
}

RateLimiter::Outcome RateLimiter::acquire(Clock::time_point deadline)
{
    std::unique_lock lock(m_mutex);
    if (m_prepaid.erase(std::this_thread::get_id()) > 0) {
        return Outcome::granted;
    }
    const std::uint64_t ticket = m_next_ticket++;
    m_waiting.push_back(ticket);
    while (true) {
        if (m_interrupted) {
            leave_queue_locked(ticket);
            return Outcome::interrupted;
        }
        const auto now = Clock::now();
        refill_locked(now);
        const bool first = m_waiting.front() == ticket;
        if (first && m_tokens >= 1.0) {
            m_tokens -= 1.0;
            ++m_taken;
            leave_queue_locked(ticket);
            return Outcome::granted;
        }
        if (now >= deadline) {
            leave_queue_locked(ticket);
            return Outcome::timed_out;
        }
        // Only the first in line watches the clock; the others wait for it to
        // be served (notify) or for their own deadline.
        auto wake = deadline;
        if (first) {
            wake = std::min(deadline, now + as_duration((1.0 - m_tokens) / m_rate));
        }
        m_cv.wait_until(lock, wake);
    }
}

bool RateLimiter::try_prepay()
{
    std::lock_guard lock(m_mutex);
    const auto id = std::this_thread::get_id();
    if (m_prepaid.contains(id)) {
        return true;
    }
    auto reserved = m_reserved.find(id);
    if (m_interrupted) {
        if (reserved != m_reserved.end()) {
            leave_queue_locked(reserved->second);
            m_reserved.erase(reserved);
        }
        return false;
    }
    refill_locked(Clock::now());
    const bool my_turn = reserved != m_reserved.end() ? m_waiting.front() == reserved->second : m_waiting.empty();
    if (my_turn && m_tokens >= 1.0) {
        m_tokens -= 1.0;
        ++m_taken;
        if (reserved != m_reserved.end()) {
            leave_queue_locked(reserved->second);
            m_reserved.erase(reserved);
        }
        m_prepaid.insert(id);
        return true;
    }
    if (reserved == m_reserved.end()) {
        m_reserved.emplace(id, m_next_ticket);
        m_waiting.push_back(m_next_ticket++);
    }
    return false;
}

void RateLimiter::forfeit_prepaid()
{
    std::lock_guard lock(m_mutex);
    const auto id = std::this_thread::get_id();
    m_prepaid.erase(id);
    if (auto reserved = m_reserved.find(id); reserved != m_reserved.end()) {
        leave_queue_locked(reserved->second);
        m_reserved.erase(reserved);
    }
}

RateLimiter::Clock::duration RateLimiter::time_until_free() const
{
    std::lock_guard lock(m_mutex);
    const double elapsed = std::chrono::duration<double>(Clock::now() - m_last_refill).count();
    const double tokens = std::min(m_burst, m_tokens + std::max(0.0, elapsed) * m_rate);
    // Each one ahead in line takes a token first.
    std::size_t ahead = m_waiting.size();
    if (auto reserved = m_reserved.find(std::this_thread::get_id()); reserved != m_reserved.end()) {
        ahead = static_cast<std::size_t>(std::find(m_waiting.begin(), m_waiting.end(), reserved->second) -
                                         m_waiting.begin());
    }
    const double needed = static_cast<double>(ahead) + 1.0 - tokens;
    if (ahead == 0) {
        return needed <= 0 ? Clock::duration::zero() : as_duration(needed / m_rate);
    }
    // Those ahead are being served: look again shortly rather than spin.
    return std::max<Clock::duration>(std::chrono::milliseconds(1), as_duration(needed / m_rate));
}

void RateLimiter::interrupt()
{
    std::lock_guard lock(m_mutex);
    m_interrupted = true;
    m_cv.notify_all();
}

void RateLimiter::resume()
{
    std::lock_guard lock(m_mutex);
    m_interrupted = false;
}

std::uint64_t RateLimiter::tokens_taken() const
{
    std::lock_guard lock(m_mutex);
    return m_taken;
}

} // namespace metalsync

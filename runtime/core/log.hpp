#pragma once

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <sstream>
#include <string>

namespace kontor {

/// Log levels, most severe first.
enum class log_level { error, warn, info };

/// Writes one line to stderr: "2026-11-22T10:00:00.123Z INFO [component] message".
/// Thread-safe; meant for lifecycle events and failures, never for every request.
inline void log(log_level level, const char* component, const std::string& message) {
  static std::mutex mtx;
  using namespace std::chrono;
  auto now = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(now / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  const char* names[] = {"ERROR", "WARN", "INFO"};
  std::lock_guard<std::mutex> guard{mtx};
  std::fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s [%s] %s\n", tm.tm_year + 1900,
               tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
               static_cast<int>(now % 1000), names[static_cast<int>(level)], component,
               message.c_str());
  std::fflush(stderr);
}

} // namespace kontor

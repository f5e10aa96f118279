#pragma once

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>

namespace kontor {

/// Log levels, most severe first.
enum class log_level { error, warn, info };

/// How lines are written: text ("2026-11-22T10:00:00.123Z INFO [component] message key=value")
/// or one JSON object per line ({"time":…,"level":"info","node":…,"component":…,"message":…,
/// then the fields}) for log collectors.
enum class log_format { text, json };

/// A named value a line carries besides its message (e.g. the entity id and request id of a
/// command), written as key=value in text and as a string member in JSON.
struct log_field {
  std::string_view key;
  std::string_view value;
};

namespace detail {

struct log_settings {
  std::mutex mutex; ///< one line at a time; guards node
  std::atomic<log_format> format{log_format::text};
  std::string node;
};

inline log_settings& settings() {
  static log_settings s;
  return s;
}

/// Appends `s` as the body of a JSON string (quotes, backslashes and control characters escaped;
/// other bytes as they are: messages are UTF-8).
inline void append_json_escaped(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xf];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
}

} // namespace detail

/// Sets the format of every line from now on and the node name JSON lines carry. Called once at
/// start, before the threads that log.
inline void configure_log(log_format format, std::string node) {
  auto& s = detail::settings();
  std::lock_guard<std::mutex> guard{s.mutex};
  s.node = std::move(node);
  s.format.store(format);
}

/// Writes one line to stderr in the configured format. Thread-safe; meant for lifecycle events
/// and failures, never for every request.
inline void log(log_level level, std::string_view component, std::string_view message,
                std::initializer_list<log_field> fields = {}) {
  using namespace std::chrono;
  auto now = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(now / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char time[64]; // room for any int the compiler cannot rule out
  std::snprintf(time, sizeof time, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(now % 1000));
  auto& s = detail::settings();
  std::string line;
  line.reserve(96 + message.size());
  std::lock_guard<std::mutex> guard{s.mutex};
  if (s.format.load() == log_format::json) {
    const char* names[] = {"error", "warn", "info"};
    line += "{\"time\":\"";
    line += time;
    line += "\",\"level\":\"";
    line += names[static_cast<int>(level)];
    line += "\",\"node\":\"";
    detail::append_json_escaped(line, s.node);
    line += "\",\"component\":\"";
    detail::append_json_escaped(line, component);
    line += "\",\"message\":\"";
    detail::append_json_escaped(line, message);
    line += '"';
    for (const auto& f : fields) {
      line += ",\"";
      detail::append_json_escaped(line, f.key);
      line += "\":\"";
      detail::append_json_escaped(line, f.value);
      line += '"';
    }
    line += "}\n";
  } else {
    const char* names[] = {"ERROR", "WARN", "INFO"};
    line += time;
    line += ' ';
    line += names[static_cast<int>(level)];
    line += " [";
    line += component;
    line += "] ";
    line += message;
    for (const auto& f : fields) {
      line += ' ';
      line += f.key;
      line += '=';
      line += f.value;
    }
    line += '\n';
  }
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

} // namespace kontor

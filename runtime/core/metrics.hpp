#pragma once

// Process metrics in the Prometheus text format: counters (with labels), histograms and gauges
// read from callbacks. Updates are lock-free atomics; only creating a new labelled series locks.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace kontor {

/// A monotonically increasing count.
class metric_counter {
public:
  void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

private:
  std::atomic<std::uint64_t> value_{0};
};

/// Observations counted in buckets with fixed upper bounds (seconds or any unit).
class metric_histogram {
public:
  explicit metric_histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1) {}

  void observe(double v) noexcept {
    std::size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i])
      ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    // Sum in micro-units, so an atomic integer suffices.
    sum_micro_.fetch_add(static_cast<std::int64_t>(v * 1e6), std::memory_order_relaxed);
  }

  const std::vector<double>& bounds() const noexcept { return bounds_; }
  /// Count of observations <= bounds()[i] (cumulative), i == bounds().size() is +Inf.
  std::uint64_t cumulative(std::size_t i) const noexcept {
    std::uint64_t n = 0;
    for (std::size_t k = 0; k <= i && k < buckets_.size(); ++k)
      n += buckets_[k].load(std::memory_order_relaxed);
    return n;
  }
  std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }
  double sum() const noexcept { return static_cast<double>(sum_micro_.load()) / 1e6; }

private:
  std::vector<double> bounds_;
  std::vector<std::atomic<std::uint64_t>> buckets_;
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::int64_t> sum_micro_{0};
};

/// Label pairs of one series, e.g. {{"route","POST /accounts"},{"status","201"}}.
using metric_labels = std::vector<std::pair<std::string, std::string>>;

/// All metrics of a process; renders them for GET /metrics.
class metrics_registry {
public:
  /// The counter `name{labels}`, created on first use. References stay valid.
  metric_counter& counter(const std::string& name, const std::string& help,
                          const metric_labels& labels = {}) {
    auto key = series_key(name, labels);
    {
      std::shared_lock<std::shared_mutex> read{mtx_};
      if (auto i = counters_.find(key); i != counters_.end())
        return *i->second.value;
    }
    std::unique_lock<std::shared_mutex> write{mtx_};
    help_.emplace(name, family{help, "counter"});
    auto& slot = counters_[key];
    if (!slot.value)
      slot = {name, label_text(labels), std::make_unique<metric_counter>()};
    return *slot.value;
  }

  /// The histogram `name` with `bounds`, created on first use.
  metric_histogram& histogram(const std::string& name, const std::string& help,
                              std::vector<double> bounds) {
    std::unique_lock<std::shared_mutex> write{mtx_};
    help_.emplace(name, family{help, "histogram"});
    auto& slot = histograms_[name];
    if (!slot)
      slot = std::make_unique<metric_histogram>(std::move(bounds));
    return *slot;
  }

  /// The counter `name{labels}` whose value is read from `fn` at every render (a count kept
  /// elsewhere, e.g. in a component's atomic statistics).
  void counter_from(const std::string& name, const std::string& help, const metric_labels& labels,
                    std::function<double()> fn) {
    std::unique_lock<std::shared_mutex> write{mtx_};
    help_.emplace(name, family{help, "counter"});
    read_counters_[series_key(name, labels)] = {name, label_text(labels), std::move(fn)};
  }

  /// A gauge whose value is read from `fn` at every render.
  void gauge(const std::string& name, const std::string& help, std::function<double()> fn) {
    std::unique_lock<std::shared_mutex> write{mtx_};
    help_.emplace(name, family{help, "gauge"});
    gauges_[name] = std::move(fn);
  }

  /// The gauge `name{labels}` whose value is read from `fn` at every render.
  void gauge(const std::string& name, const std::string& help, const metric_labels& labels,
             std::function<double()> fn) {
    std::unique_lock<std::shared_mutex> write{mtx_};
    help_.emplace(name, family{help, "gauge"});
    labelled_gauges_[series_key(name, labels)] = {name, label_text(labels), std::move(fn)};
  }

  /// Everything in the Prometheus text exposition format (version 0.0.4).
  std::string render() const {
    std::shared_lock<std::shared_mutex> read{mtx_};
    std::ostringstream out;
    std::string last;
    auto header = [&](const std::string& name) {
      if (name == last)
        return;
      last = name;
      auto f = help_.find(name);
      if (f != help_.end())
        out << "# HELP " << name << ' ' << f->second.help << "\n# TYPE " << name << ' '
            << f->second.type << '\n';
    };
    for (const auto& [key, s] : counters_) {
      header(s.name);
      out << s.name << s.labels << ' ' << s.value->value() << '\n';
    }
    for (const auto& [key, s] : read_counters_) {
      header(s.name);
      out << s.name << s.labels << ' ' << s.read() << '\n';
    }
    for (const auto& [name, h] : histograms_) {
      header(name);
      for (std::size_t i = 0; i < h->bounds().size(); ++i)
        out << name << "_bucket{le=\"" << h->bounds()[i] << "\"} " << h->cumulative(i) << '\n';
      out << name << "_bucket{le=\"+Inf\"} " << h->count() << '\n';
      out << name << "_sum " << h->sum() << '\n' << name << "_count " << h->count() << '\n';
    }
    for (const auto& [name, fn] : gauges_) {
      header(name);
      out << name << ' ' << fn() << '\n';
    }
    for (const auto& [key, s] : labelled_gauges_) {
      header(s.name);
      out << s.name << s.labels << ' ' << s.read() << '\n';
    }
    return out.str();
  }

private:
  struct family {
    std::string help;
    std::string type;
  };
  struct series {
    std::string name;
    std::string labels;
    std::unique_ptr<metric_counter> value;
  };

  struct read_series {
    std::string name;
    std::string labels;
    std::function<double()> read;
  };

  static std::string label_text(const metric_labels& labels) {
    if (labels.empty())
      return {};
    std::string out = "{";
    for (std::size_t i = 0; i < labels.size(); ++i) {
      if (i > 0)
        out += ',';
      out += labels[i].first + "=\"";
      for (char c : labels[i].second) {
        if (c == '"' || c == '\\')
          out += '\\';
        out += c == '\n' ? ' ' : c;
      }
      out += '"';
    }
    return out + "}";
  }

  static std::string series_key(const std::string& name, const metric_labels& labels) {
    return name + label_text(labels);
  }

  mutable std::shared_mutex mtx_;
  std::map<std::string, family> help_;
  std::map<std::string, series> counters_;                          // sorted: families stay together
  std::map<std::string, read_series> read_counters_;                // sorted like counters_
  std::map<std::string, std::unique_ptr<metric_histogram>> histograms_;
  std::map<std::string, std::function<double()>> gauges_;
  std::map<std::string, read_series> labelled_gauges_;              // sorted like counters_
};

} // namespace kontor

#include "runtime/sharding/allocation.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <caf/all.hpp>

#include "runtime/core/log.hpp"
#include "runtime/sharding/cluster_messages.hpp"

namespace kontor::sharding {

namespace {

namespace fs = std::filesystem;
constexpr const char* format_line = "kontor-allocation/1";
constexpr const char* component = "tables";

bool fsync_path(const fs::path& p, int flags) {
  int fd = ::open(p.c_str(), flags);
  if (fd < 0)
    return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

} // namespace

std::optional<stored_allocation> load_allocation(const fs::path& file, std::string& error) {
  std::ifstream in(file);
  if (!in)
    return std::nullopt;
  stored_allocation out;
  std::string line;
  auto fail = [&](const std::string& what) {
    error = file.string() + ": " + what;
    return std::nullopt;
  };
  if (!std::getline(in, line) || line != format_line)
    return fail("not a " + std::string{format_line} + " file");
  std::size_t shards = 0;
  bool end_seen = false;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (key == "promised")
      ls >> out.promised;
    else if (key == "ballot")
      ls >> out.table.ballot;
    else if (key == "version")
      ls >> out.table.version;
    else if (key == "shards") {
      ls >> shards;
      out.table.owners.assign(shards, {});
    } else if (key == "owner") {
      std::size_t s = 0;
      std::string owner;
      ls >> s >> owner;
      if (s >= shards)
        return fail("owner of shard " + std::to_string(s) + " beyond " + std::to_string(shards));
      out.table.owners[s] = owner == "-" ? std::string{} : owner;
    } else if (key == "member") {
      std::string m;
      ls >> m;
      out.table.members.push_back(m);
    } else if (key == "end") {
      end_seen = true;
      break;
    } else {
      return fail("unknown line '" + line + "'");
    }
    if (ls.fail())
      return fail("malformed line '" + line + "'");
  }
  if (!end_seen)
    return fail("truncated (no end line)");
  return out;
}

bool save_allocation(const fs::path& file, const stored_allocation& s, std::string& error) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  const auto tmp = fs::path(file.string() + ".tmp");
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << format_line << "\n";
    out << "promised " << s.promised << "\n";
    out << "ballot " << s.table.ballot << "\n";
    out << "version " << s.table.version << "\n";
    out << "shards " << s.table.owners.size() << "\n";
    for (std::size_t i = 0; i < s.table.owners.size(); ++i)
      out << "owner " << i << " " << (s.table.owners[i].empty() ? "-" : s.table.owners[i]) << "\n";
    for (const auto& m : s.table.members)
      out << "member " << m << "\n";
    out << "end\n";
    out.flush();
    if (!out) {
      error = "cannot write " + tmp.string();
      return false;
    }
  }
  if (!fsync_path(tmp, O_RDONLY)) {
    error = "cannot fsync " + tmp.string();
    return false;
  }
  fs::rename(tmp, file, ec);
  if (ec) {
    error = "cannot rename " + tmp.string() + ": " + ec.message();
    return false;
  }
  fsync_path(file.parent_path(), O_RDONLY | O_DIRECTORY);
  return true;
}

namespace {

struct store_state {
  fs::path file;
  stored_allocation stored;
  static inline const char* name = "kontor.table_store";
};

using store_ptr = caf::stateful_actor<store_state>*;

/// Persists the state; false (and logged) when the disk refuses: then nothing is promised.
bool persist(store_ptr self, const stored_allocation& next) {
  std::string error;
  if (!save_allocation(self->state.file, next, error)) {
    log(log_level::error, component, error);
    return false;
  }
  self->state.stored = next;
  return true;
}

caf::behavior store_actor(store_ptr self, fs::path dir) {
  auto& st = self->state;
  st.file = dir / "allocation";
  std::string error;
  if (auto loaded = load_allocation(st.file, error))
    st.stored = std::move(*loaded);
  else if (!error.empty())
    log(log_level::error, component,
        error + "; starting from an empty table (the coordinator reads the others' copies)");
  return {
    [=](table_read_atom, std::uint64_t ballot) -> table_reply {
      auto& st = self->state;
      if (ballot < st.stored.promised)
        return {false, st.stored.promised, st.stored.table};
      if (ballot > st.stored.promised) {
        auto next = st.stored;
        next.promised = ballot;
        if (!persist(self, next))
          return {false, st.stored.promised, st.stored.table};
      }
      return {true, st.stored.promised, st.stored.table};
    },
    [=](table_write_atom, allocation_table& table) -> table_reply {
      auto& st = self->state;
      if (table.ballot < st.stored.promised)
        return {false, st.stored.promised, {}};
      auto next = st.stored;
      next.promised = table.ballot;
      if (newer(table, next.table))
        next.table = std::move(table);
      if (!persist(self, next))
        return {false, st.stored.promised, {}};
      return {true, st.stored.promised, {}};
    },
  };
}

} // namespace

caf::actor spawn_table_store(caf::actor_system& sys, const fs::path& dir) {
  // Scheduled although it fsyncs: it answers other nodes (CAF 0.17.6 can hang at shutdown when
  // a detached actor did), and it writes only when the table changes (rarely, a small file).
  return sys.spawn(store_actor, dir);
}

} // namespace kontor::sharding

#pragma once

// Where every shard lives: the allocation table, its durable copy on every node (the table
// store), and the protocol the shard coordinator uses to read and write those copies.
//
// Safety (CLUSTER.md invariant 3): a table version takes effect only after a majority of the up
// members' stores accepted it; a new coordinator reads a majority first and continues from the
// highest version it finds, under a ballot higher than any its predecessor wrote with. A store
// promises to accept nothing from an older ballot once it answered a read of a newer one, so a
// coordinator that lost its place (a zombie after a partition or a freeze) cannot commit.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/fwd.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "runtime/core/ids.hpp"

namespace kontor::sharding {

/// The allocation table: the owner (a node id) of every shard.
struct allocation_table {
  std::uint64_t version = 0;           ///< 0: never written
  std::uint64_t ballot = 0;            ///< of the coordinator that wrote it
  std::vector<std::string> owners;     ///< per shard; "" = not allocated yet
  std::vector<std::string> members;    ///< the up members when it was written (quorum base)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, allocation_table& x) {
  return f(caf::meta::type_name("allocation_table"), x.version, x.ballot, x.owners, x.members);
}

/// Whether `a` is newer than `b` (higher version; on a tie, the higher ballot).
inline bool newer(const allocation_table& a, const allocation_table& b) {
  return a.version != b.version ? a.version > b.version : a.ballot > b.ballot;
}

/// A store's answer to a read or a write.
struct table_reply {
  bool ok = false;              ///< the ballot was at least the one promised
  std::uint64_t promised = 0;   ///< the highest ballot the store promised
  allocation_table stored;      ///< its newest accepted table (reads only)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, table_reply& x) {
  return f(caf::meta::type_name("table_reply"), x.ok, x.promised, x.stored);
}

/// (table_read_atom, ballot) → table_reply: promise `ballot`, return the stored table.
using table_read_atom = caf::atom_constant<caf::atom("tb_read")>;
/// (table_write_atom, allocation_table) → table_reply: accept it unless an older ballot.
using table_write_atom = caf::atom_constant<caf::atom("tb_write")>;

/// What a table store keeps durably.
struct stored_allocation {
  std::uint64_t promised = 0;
  allocation_table table;
};

/// Reads `file` (nullopt when absent); an unreadable file is an error message.
std::optional<stored_allocation> load_allocation(const std::filesystem::path& file,
                                                 std::string& error);

/// Writes `file` atomically and durably (temp file, fsync, rename, fsync of the directory).
bool save_allocation(const std::filesystem::path& file, const stored_allocation& s,
                     std::string& error);

/// Starts this node's table store (service "tables"): it keeps
/// `dir`/allocation and answers table_read_atom and table_write_atom.
caf::actor spawn_table_store(caf::actor_system& sys, const std::filesystem::path& dir);

} // namespace kontor::sharding

# cmake -DINPUT=<file> -DOUTPUT=<file.cpp> -DFUNCTION=<name> -P embed_text.cmake
# Writes a .cpp defining `std::string_view kontor::gateway::<FUNCTION>()` with the file's text,
# so the file in the source tree is the one source of truth (the OpenAPI document, the
# dashboard page). Included by embed_openapi.cmake after its checks.
if(NOT DEFINED content)
  file(READ "${INPUT}" content)
endif()
set(delimiter "kontor_embed")
string(FIND "${content}" ")${delimiter}" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter ')${delimiter}'")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_text.cmake; edit that file instead.\n"
  "#include <string_view>\n\n"
  "#include \"gateway/api.hpp\"\n\n"
  "namespace kontor::gateway {\n\n"
  "std::string_view ${FUNCTION}() {\n"
  "  static constexpr std::string_view text = R\"${delimiter}(${content})${delimiter}\";\n"
  "  return text;\n"
  "}\n\n"
  "} // namespace kontor::gateway\n")
# Only touch the output when it changed (no rebuild of what depends on it otherwise).
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")

// Case-folder I/O of the emulation drivers that take their inputs from files (ssd_bwd_emu.cpp, ssd_walk_emu.cpp):
// DIR/meta.txt holds "key value" lines, DIR/<name>.bin raw arrays; outputs go to DIR/out_<name>.bin.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

namespace emu_case {

inline std::string dir;
inline std::map<std::string, double> meta;

// Reads DIR/meta.txt into meta (dir set first).
inline void read_meta(const std::string& case_dir) {
  dir = case_dir;
  std::ifstream mf(dir + "/meta.txt");
  std::string k;
  double v;
  while (mf >> k >> v) meta[k] = v;
}
inline int64_t M(const char* k) { return int64_t(meta.at(k)); }
// DIR/<name>.bin as T elements (empty when the file is absent).
template <typename T> std::vector<T> read_arr(const std::string& name) {
  std::ifstream f(dir + "/" + name + ".bin", std::ios::binary);
  if (!f) return {};
  const std::vector<char> raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<T> v(raw.size() / sizeof(T));
  if (!v.empty()) std::memcpy(v.data(), raw.data(), v.size() * sizeof(T));
  return v;
}
template <typename T> void write_arr(const std::string& name, const std::vector<T>& v) {
  std::ofstream f(dir + "/out_" + name + ".bin", std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(T)));
}

}  // namespace emu_case

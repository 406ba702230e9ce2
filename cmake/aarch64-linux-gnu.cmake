# aarch64-linux-gnu.cmake — CMake toolchain file: cross-compile annex for
# ARM64 Linux (NEON kernels) on a Debian amd64 host, and run the tests under
# qemu-user.
#
# Owns: the cross compiler, where find_* look for the arm64 libraries, and
# CMAKE_CROSSCOMPILING_EMULATOR, which makes ctest run every test executable
# through qemu-aarch64. scripts/test-arm64.sh installs what this file needs
# and runs the suite with it.
#
# Needs (Debian 12): gcc-aarch64-linux-gnu, qemu-user (or qemu-user-static),
# and, after `dpkg --add-architecture arm64`, the multiarch libraries the
# build links: libsqlite3-dev:arm64 libcmocka-dev:arm64, optionally
# libopenblas-dev:arm64.
#
# Usage:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
#   cmake --build build-arm64 -j && (cd build-arm64 && ctest)
#
# Where things are:
#   - Debian's cross gcc searches the multiarch directories
#     /usr/include/aarch64-linux-gnu and /usr/lib/aarch64-linux-gnu, where
#     the :arm64 packages put their headers and libraries, as well as its
#     own /usr/aarch64-linux-gnu.
#   - find_* search those multiarch directories through
#     CMAKE_LIBRARY_ARCHITECTURE; the host's x86-64 libraries live in
#     .../x86_64-linux-gnu, which is never searched.
#   - At run time qemu-aarch64 -L <prefix> opens guest paths under <prefix>
#     first and falls back to the host path. <prefix> is the cross glibc,
#     /usr/aarch64-linux-gnu: the ELF interpreter /lib/ld-linux-aarch64.so.1
#     comes from there. The multiarch libraries (sqlite3, cmocka, openblas in
#     /usr/lib/aarch64-linux-gnu) are found through the fallback.
#   - The guest's LD_LIBRARY_PATH starts with "/lib", which under the prefix
#     is the cross glibc (libc, libm, libgomp, libgcc_s), so libc.so.6
#     comes from the same glibc build as the loader. Without it the loader
#     would find libc.so.6 of libc6:arm64 (pulled in by the :arm64 libraries)
#     in /lib/aarch64-linux-gnu, a different Debian revision of glibc 2.36
#     (Debian 12: 2.36-8cross1 vs 2.36-9+deb12uN), and a loader and libc
#     from different builds are not meant to be mixed.

# Overrides (cache variables, -D on the first configure):
#   ANNEX_QEMU_AARCH64     the emulator binary (default: qemu-aarch64, else
#                          qemu-aarch64-static, from PATH)
#   ANNEX_QEMU_LD_PREFIX   the -L prefix (default /usr/aarch64-linux-gnu)

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(ANNEX_CROSS_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${ANNEX_CROSS_TRIPLE}-gcc)
set(CMAKE_LIBRARY_ARCHITECTURE ${ANNEX_CROSS_TRIPLE})

# Programs (cmake helpers, the emulator) come from the host; libraries,
# headers and packages from the cross prefix or the multiarch directories.
set(CMAKE_FIND_ROOT_PATH /usr/${ANNEX_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# pkg-config, where a find module uses it, must report the arm64 .pc files.
set(ENV{PKG_CONFIG_LIBDIR}
    "/usr/lib/${ANNEX_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig")

# The emulator ctest puts in front of every test executable.
set(ANNEX_QEMU_LD_PREFIX /usr/${ANNEX_CROSS_TRIPLE} CACHE PATH
    "qemu-aarch64 -L prefix: the guest's root for the loader and glibc")
find_program(ANNEX_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(ANNEX_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR
      ${ANNEX_QEMU_AARCH64} -L ${ANNEX_QEMU_LD_PREFIX}
      -E LD_LIBRARY_PATH=/lib:/usr/lib/${ANNEX_CROSS_TRIPLE}:/lib/${ANNEX_CROSS_TRIPLE})
endif()

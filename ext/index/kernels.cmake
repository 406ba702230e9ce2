# kernels.cmake — sources and per-file flags of the distance kernels.
#
# Owns: ANNEX_KERNEL_SOURCES, the list of distance kernel sources to add to
# any target that needs distance.h, and the per-source ISA flags of the SIMD
# kernel files. Only those files get the flags; distance.c checks the CPU
# before it hands their kernels out. x86-64 gets the AVX2 and AVX-512 sets,
# AArch64 the NEON set (base ISA there, no flags); other targets only the
# portable set.
#
# Usage (from the directory whose targets use the list, because source file
# properties are scoped to the directory that sets them):
#   include(ext/index/kernels.cmake)
#   add_library(annex ... ${ANNEX_KERNEL_SOURCES})

set(ANNEX_KERNEL_SOURCES ${CMAKE_CURRENT_LIST_DIR}/distance.c)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64)$")
  list(APPEND ANNEX_KERNEL_SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/distance_avx2.c
    ${CMAKE_CURRENT_LIST_DIR}/distance_avx512.c)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/distance_avx2.c
    PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/distance_avx512.c
    PROPERTIES COMPILE_OPTIONS "-mavx512f;-mavx512bw;-mavx512vl;-mfma")
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  list(APPEND ANNEX_KERNEL_SOURCES ${CMAKE_CURRENT_LIST_DIR}/distance_neon.c)
endif()

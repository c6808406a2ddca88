# SPDX-License-Identifier: Apache-2.0
# Compiler flags for dspark's own targets only (never for third-party headers).
function(dspark_target_flags target)
  target_compile_options(${target} PRIVATE
    # -fno-semantic-interposition: with -fPIC, GCC otherwise keeps the header math (dexp, ...)
    # interposable and leaves the row loops scalar; measured 100x slower per element.
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror -O3 -fno-semantic-interposition -fvisibility=hidden>
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo -Xcompiler=-Wall>)
  if(DSPARK_NATIVE_ARCH)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
  endif()
endfunction()

if(DSPARK_OPENMP)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
endif()

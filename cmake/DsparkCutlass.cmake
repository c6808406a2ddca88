# SPDX-License-Identifier: Apache-2.0
# CUTLASS/CuTe headers for CUDA kernels. Sets DSPARK_WITH_CUTLASS and DSPARK_CUTLASS_INCLUDE_DIRS.
# Headers come from DSPARK_CUTLASS_DIR or the nvidia-cutlass wheel in the build's Python. An
# isolated `pip install .` cannot see a wheel installed in your venv: with DSPARK_CUTLASS=ON that
# is a hard error, with AUTO a loud warning (and dspark.backends() reports cutlass=False).
set(DSPARK_WITH_CUTLASS OFF)
if(DSPARK_CUTLASS STREQUAL "ON" AND NOT DSPARK_WITH_CUDA)
  message(FATAL_ERROR "dspark: DSPARK_CUTLASS=ON needs the CUDA backend (DSPARK_CUDA=AUTO|ON and nvcc)")
endif()
if(DSPARK_WITH_CUDA AND NOT DSPARK_CUTLASS STREQUAL "OFF")
  set(_cutlass_root "${DSPARK_CUTLASS_DIR}")
  if(NOT _cutlass_root)
    execute_process(
      COMMAND ${Python_EXECUTABLE} -c
        "import importlib.util as u, os; s = u.find_spec('cutlass_library'); print(os.path.join(s.submodule_search_locations[0], 'source') if s else '')"
      OUTPUT_VARIABLE _cutlass_root OUTPUT_STRIP_TRAILING_WHITESPACE)
  endif()
  if(_cutlass_root AND EXISTS "${_cutlass_root}/include/cute/tensor.hpp")
    set(DSPARK_WITH_CUTLASS ON)
    set(DSPARK_CUTLASS_INCLUDE_DIRS "${_cutlass_root}/include" "${_cutlass_root}/tools/util/include")
    message(STATUS "dspark: CUTLASS/CuTe headers at ${_cutlass_root}")
  elseif(DSPARK_CUTLASS STREQUAL "ON")
    message(FATAL_ERROR "dspark: DSPARK_CUTLASS=ON but no CUTLASS headers were found "
      "(looked in DSPARK_CUTLASS_DIR='${DSPARK_CUTLASS_DIR}' and the nvidia-cutlass wheel of "
      "${Python_EXECUTABLE}). Install `nvidia-cutlass==4.2.0.0` and build with "
      "`pip install --no-build-isolation .`, or set DSPARK_CUTLASS_DIR.")
  else()
    message(WARNING "dspark: CUTLASS headers NOT found: CUTLASS/CuTe kernels will NOT be built. "
      "An isolated `pip install .` cannot see a venv's nvidia-cutlass; use --no-build-isolation or "
      "DSPARK_CUTLASS_DIR, or DSPARK_CUTLASS=ON to make this an error.")
  endif()
endif()

// SPDX-License-Identifier: Apache-2.0
// Layer: bindings/. register_scheduler: SpsTable, LoadMonitor and PrefixScheduler. Confidences
// cross as borrowed DLPack views (float32, CPU, [R, G], unit stride along G); the GIL is released
// around every walk and observation. Python wrappers live in python/dspark/scheduler.py.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <vector>

#include "bindings/dlpack.h"
#include "bindings/register.h"
#include "ops/checks.h"
#include "scheduler/load_monitor.h"
#include "scheduler/prefix_scheduler.h"
#include "scheduler/sps_table.h"

namespace dspark::bindings {
namespace py = pybind11;
using scheduler::Interpolation;
using scheduler::LoadMonitor;
using scheduler::PrefixScheduler;
using scheduler::ScheduleInput;
using scheduler::ScheduleSummary;
using scheduler::SpsTable;

namespace {

Interpolation to_mode(int mode) {
  DSPARK_CHECK(mode == 0 || mode == 1, "interpolation: expected 0 (linear) or 1 (step), got ",
               mode);
  return static_cast<Interpolation>(mode);
}

/// Borrows confidences [R, G] (and optional max_lengths [R]) into a ScheduleInput.
ScheduleInput make_input(py::handle confidences, py::handle max_lengths, int64_t token_budget,
                         KeepAlive& keep) {
  const TensorView c = borrow(confidences, "confidences", keep);
  DSPARK_CHECK(c.device == DeviceType::kCPU, "confidences: expected a CPU tensor, got a CUDA one");
  ops::check_tensor(c, "confidences", {DType::kFloat32}, {-1, -1});
  ScheduleInput in;
  in.confidences = c.ptr<const float>();
  in.num_requests = c.size(0);
  in.draft_len = c.size(1);
  in.row_stride = c.size(0) > 1 ? c.stride(0) : c.size(1);
  if (!max_lengths.is_none()) {
    const TensorView m = borrow(max_lengths, "max_lengths", keep);
    DSPARK_CHECK(m.device == DeviceType::kCPU, "max_lengths: expected a CPU tensor");
    ops::check_tensor(m, "max_lengths", {DType::kInt32}, {in.num_requests});
    in.max_lengths = m.ptr<const int32_t>();
  }
  in.token_budget = token_budget;
  return in;
}

int32_t* out_lengths(py::handle out, int64_t num_requests, KeepAlive& keep) {
  const TensorView o = borrow(out, "out", keep);
  DSPARK_CHECK(o.device == DeviceType::kCPU, "out: expected a CPU tensor");
  ops::check_tensor(o, "out", {DType::kInt32}, {num_requests});
  return o.ptr<int32_t>();
}

py::tuple summary_tuple(const ScheduleSummary& s) {
  return py::make_tuple(s.tokens, s.expected_tokens, s.objective);
}

}  // namespace

void register_scheduler(py::module_& m) {
  py::class_<SpsTable, std::shared_ptr<SpsTable>>(m, "SpsTable",
                                                  "Step-rate curve SPS(B); see dspark.SpsTable.")
      .def(py::init([](std::vector<double> tokens, std::vector<double> sps, int mode) {
             return std::make_shared<SpsTable>(std::move(tokens), std::move(sps), to_mode(mode));
           }),
           py::arg("tokens"), py::arg("steps_per_second"), py::arg("interpolation") = 0)
      .def_static(
          "from_step_times",
          [](std::vector<double> tokens, std::vector<double> seconds, int mode) {
            return std::make_shared<SpsTable>(
                SpsTable::from_step_times(std::move(tokens), std::move(seconds), to_mode(mode)));
          },
          py::arg("tokens"), py::arg("step_seconds"), py::arg("interpolation") = 0)
      .def("step_time", &SpsTable::step_time, py::arg("tokens"))
      .def("sps", &SpsTable::sps, py::arg("tokens"))
      .def(
          "sps_many",
          [](const SpsTable& t, const std::vector<double>& b) {
            std::vector<double> out(b.size());
            for (size_t i = 0; i < b.size(); ++i) out[i] = t.sps(b[i]);
            return out;
          },
          py::arg("tokens"))
      .def_property_readonly("tokens", &SpsTable::tokens)
      .def_property_readonly("step_times", &SpsTable::step_times)
      .def_property_readonly("steps_per_second", &SpsTable::steps_per_second)
      .def_property_readonly("interpolation",
                             [](const SpsTable& t) { return static_cast<int>(t.mode()); });

  py::class_<LoadMonitor, std::shared_ptr<LoadMonitor>>(
      m, "LoadMonitor", "Online SPS refinement; see dspark.LoadMonitor.")
      .def(py::init([](const SpsTable& initial, double alpha, double clip, double init_scale,
                       bool monotone) {
             return std::make_shared<LoadMonitor>(
                 initial, scheduler::LoadMonitorOptions{alpha, clip, init_scale, monotone});
           }),
           py::arg("initial"), py::arg("alpha"), py::arg("clip"), py::arg("init_scale"),
           py::arg("monotone"))
      .def("observe", &LoadMonitor::observe, py::arg("tokens"), py::arg("step_seconds"),
           py::call_guard<py::gil_scoped_release>())
      .def("table", [](LoadMonitor& lm) { return std::make_shared<SpsTable>(*lm.table()); })
      .def_property_readonly("num_observations", &LoadMonitor::num_observations)
      .def_property_readonly("num_clipped", &LoadMonitor::num_clipped)
      .def_property_readonly("num_out_of_range", &LoadMonitor::num_out_of_range)
      .def_property_readonly("counts", &LoadMonitor::counts);

  py::class_<PrefixScheduler, std::shared_ptr<PrefixScheduler>>(
      m, "PrefixScheduler", "Algorithm 1 prefix walk; see dspark.PrefixScheduler.")
      .def(py::init([](std::shared_ptr<SpsTable> t, bool early_stop) {
             return std::make_shared<PrefixScheduler>(std::shared_ptr<const SpsTable>(t),
                                                      early_stop);
           }),
           py::arg("sps"), py::arg("early_stop"))
      .def(py::init([](std::shared_ptr<LoadMonitor> lm, bool early_stop) {
             return std::make_shared<PrefixScheduler>(lm, early_stop);
           }),
           py::arg("sps"), py::arg("early_stop"))
      .def(
          "schedule",
          [](const PrefixScheduler& s, py::handle confidences, py::handle max_lengths,
             int64_t token_budget, py::handle out) {
            KeepAlive keep;
            const ScheduleInput in = make_input(confidences, max_lengths, token_budget, keep);
            int32_t* lengths = out_lengths(out, in.num_requests, keep);
            ScheduleSummary sum;
            {
              py::gil_scoped_release release;
              sum = s.schedule(in, lengths);
            }
            return summary_tuple(sum);
          },
          py::arg("confidences"), py::arg("max_lengths"), py::arg("token_budget"), py::arg("out"),
          "Writes lengths into out [R] int32; returns (tokens, expected_tokens, objective).")
      .def(
          "capacity",
          [](const PrefixScheduler& s, py::handle confidences, py::handle max_lengths,
             int64_t token_budget) {
            KeepAlive keep;
            const ScheduleInput in = make_input(confidences, max_lengths, token_budget, keep);
            py::gil_scoped_release release;
            return s.capacity(in);
          },
          py::arg("confidences"), py::arg("max_lengths"), py::arg("token_budget"))
      .def(
          "admit_top_k",
          [](const PrefixScheduler& s, py::handle confidences, int64_t k, py::handle max_lengths,
             int64_t token_budget, py::handle out) {
            KeepAlive keep;
            const ScheduleInput in = make_input(confidences, max_lengths, token_budget, keep);
            int32_t* lengths = out_lengths(out, in.num_requests, keep);
            ScheduleSummary sum;
            {
              py::gil_scoped_release release;
              sum = s.admit_top_k(in, k, lengths);
            }
            return summary_tuple(sum);
          },
          py::arg("confidences"), py::arg("capacity"), py::arg("max_lengths"),
          py::arg("token_budget"), py::arg("out"))
      .def("current_table",
           [](const PrefixScheduler& s) { return std::make_shared<SpsTable>(*s.current_table()); })
      .def_property_readonly("early_stop", &PrefixScheduler::early_stop);
}

}  // namespace dspark::bindings

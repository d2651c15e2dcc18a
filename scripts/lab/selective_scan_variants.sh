# Variants of the selective-scan lab: name -> -D flags (knobs documented in
# csrc/selective_scan/selective_scan_fwd_kernel.cuh). Sourced by run_selective_scan_lab.sh and
# selective_scan_emu_variants.sh. "default" = the production build; *_diag variants give wrong results on
# purpose (timing diagnostics; the lab skips the affected checks).
declare -gA VARIANTS=(
  [default]=""
  [scan]="-DMK_SS_FWD_LANE=0"
  [lane_s2]="-DMK_SS_LANE_S4_MIN_BD=1000000000"
  [lane_s4]="-DMK_SS_LANE_S4_MIN_BD=1"
  [lane_s2_w2]="-DMK_SS_LANE_S4_MIN_BD=1000000000 -DMK_SS_LANE_WARPS2=2"
  [lane_s2_w8]="-DMK_SS_LANE_S4_MIN_BD=1000000000 -DMK_SS_LANE_WARPS2=8"
  [lane_s4_w4]="-DMK_SS_LANE_S4_MIN_BD=1 -DMK_SS_LANE_WARPS4=4"
  [lane_s4_w16]="-DMK_SS_LANE_S4_MIN_BD=1 -DMK_SS_LANE_WARPS4=16"
  [lane_pf]="-DMK_SS_LANE_PF=1"
  [lane_nopairmap]="-DMK_SS_LANE_PAIRMAP=0"
  [lane_s4_nopairmap]="-DMK_SS_LANE_S4_MIN_BD=1 -DMK_SS_LANE_PAIRMAP=0"
  [lane_nospec]="-DMK_SS_LANE_SPEC=0"
  [lane_u8]="-DMK_SS_LANE_UNROLL=8"
  [lane_u2]="-DMK_SS_LANE_UNROLL=2"
  [lane_s4_nospec]="-DMK_SS_LANE_S4_MIN_BD=1 -DMK_SS_LANE_SPEC=0"
  [fwd_t8]="-DMK_SS_FWD_T=8"
  [fwd_t8_sp2]="-DMK_SS_FWD_T=8 -DMK_SS_FWD_SP=2"
  [fwd_t8_sp2_mb2]="-DMK_SS_FWD_T=8 -DMK_SS_FWD_SP=2 -DMK_SS_FWD_MIN_BLOCKS=2"
  [fwd_sp2_mb1]="-DMK_SS_FWD_SP=2 -DMK_SS_FWD_MIN_BLOCKS=1"
  [fwd_poly2]="-DMK_SS_FWD_POLY16=2"
  [fwd_poly4]="-DMK_SS_FWD_POLY16=4"
  [fwd_poly6]="-DMK_SS_FWD_POLY16=6"
  [fwd_poly4_deg4]="-DMK_SS_FWD_POLY16=4 -DMK_SS_POLY_DEG=4"
  [fwd_t8_poly4]="-DMK_SS_FWD_T=8 -DMK_SS_FWD_POLY16=4"
  [fwd_t8_sp2_poly4]="-DMK_SS_FWD_T=8 -DMK_SS_FWD_SP=2 -DMK_SS_FWD_POLY16=4"
  [fwd_w4_mb4]="-DMK_SS_FWD_WARPS=4 -DMK_SS_FWD_MIN_BLOCKS=4"
  [fwd_pscan]="-DMK_SS_FWD_PSCAN=1"
  [fwd_pchain]="-DMK_SS_FWD_PCHAIN=1"
  [fwd_prefetch]="-DMK_SS_FWD_PREFETCH=1"
  [fwd_pscan_prefetch]="-DMK_SS_FWD_PSCAN=1 -DMK_SS_FWD_PREFETCH=1"
  [fwd_pscan_pchain]="-DMK_SS_FWD_PSCAN=1 -DMK_SS_FWD_PCHAIN=1"
  [fwd_pscan_pchain_prefetch]="-DMK_SS_FWD_PSCAN=1 -DMK_SS_FWD_PCHAIN=1 -DMK_SS_FWD_PREFETCH=1"
  [fwd_t8_pscan_prefetch]="-DMK_SS_FWD_T=8 -DMK_SS_FWD_PSCAN=1 -DMK_SS_FWD_PREFETCH=1"
  [bwd_scan]="-DMK_SS_BWD_LANE=0"
  [bwd_nodbc_diag]="-DMK_SS_BWD_NO_DBC_FLUSH=1"
  [bwd_poly4]="-DMK_SS_BWD_POLY16=4"
  [bwd_ns2]="-DMK_SS_BWD_NS=2"
  [bwd_w8]="-DMK_SS_BWD_WARPS=8"
  [bwd_w8_mb2]="-DMK_SS_BWD_WARPS=8 -DMK_SS_BWD_MIN_BLOCKS=2"
  [bwd_t16_w8]="-DMK_SS_BWD_T=16 -DMK_SS_BWD_WARPS=8"
  [bwd_fl0]="-DMK_SS_BWD_CLUSTER=0"
  [bwd_fl1]="-DMK_SS_BWD_CLUSTER=1"
  [bwd_pscan0]="-DMK_SS_BWD_PSCAN=0"
  [bwd_pf0]="-DMK_SS_BWD_PREFETCH=0"
  [bwd_w12]="-DMK_SS_BWD_WARPS=12"
)
# run order (default first; the runner repeats it last as a drift check)
VARIANT_NAMES=(default scan lane_s2 lane_s4 lane_s2_w2 lane_s2_w8 lane_s4_w4 lane_s4_w16 lane_pf fwd_t8 fwd_t8_sp2 fwd_t8_sp2_mb2 fwd_sp2_mb1 fwd_poly2 fwd_poly4 fwd_poly6 fwd_poly4_deg4
               fwd_t8_poly4 fwd_t8_sp2_poly4 fwd_w4_mb4 fwd_pscan fwd_pchain fwd_prefetch fwd_pscan_prefetch fwd_pscan_pchain
               fwd_pscan_pchain_prefetch fwd_t8_pscan_prefetch
               bwd_nodbc_diag bwd_poly4 bwd_ns2 bwd_w8 bwd_w8_mb2
               bwd_t16_w8
               bwd_fl0 bwd_fl1 bwd_pscan0 bwd_pf0 bwd_w12 bwd_scan)

/* oneMKL baseline for the dense GEMM table in BENCHMARKS.md: single-thread
 * cblas_gemm_bf16bf16f32 and cblas_gemm_s8u8s32 (plain and with B packed
 * by MKL) on the same shape and random data as `tilejit tour`.
 * Build and run: see BENCHMARKS.md, "Reproducing the oneMKL baseline". */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <mkl.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
#define REPS 9
int main(int argc,char**argv){
  int M=512,N=512,K=4096; if(argc>3){M=atoi(argv[1]);N=atoi(argv[2]);K=atoi(argv[3]);}
  mkl_set_num_threads(1);
  MKL_BF16*a=mkl_malloc((size_t)M*K*2,64),*b=mkl_malloc((size_t)K*N*2,64); float*c=mkl_malloc((size_t)M*N*4,64);
  unsigned char*a8=mkl_malloc((size_t)M*K,64),*b8=mkl_malloc((size_t)K*N,64); int*c32=mkl_malloc((size_t)M*N*4,64);
  srand(7); for(size_t i=0;i<(size_t)M*K;i++){float f=(rand()/(float)RAND_MAX)*2-1; unsigned u; memcpy(&u,&f,4); a[i]=u>>16; a8[i]=rand();}
  for(size_t i=0;i<(size_t)K*N;i++){float f=(rand()/(float)RAND_MAX)*2-1; unsigned u; memcpy(&u,&f,4); b[i]=u>>16; b8[i]=rand();}
  double ops=2.0*M*N*K, t[REPS]; int co=0;
  /* bf16 plain */
  for(int r=0;r<REPS+1;r++){double s=now(); cblas_gemm_bf16bf16f32(CblasRowMajor,CblasNoTrans,CblasNoTrans,M,N,K,1.0f,a,K,b,N,0.0f,c,N); if(r) t[r-1]=now()-s;}
  qsort(t,REPS,sizeof(double),cmp); printf("mkl bf16 %dx%dx%d: %.0f Gop/s (median %.1f us)\n",M,N,K,ops/t[REPS/2]/1e9,t[REPS/2]*1e6);
  /* bf16 packed B */
  size_t sz=cblas_gemm_bf16bf16f32_pack_get_size(CblasBMatrix,M,N,K); MKL_BF16*bp=mkl_malloc(sz,64);
  cblas_gemm_bf16bf16f32_pack(CblasRowMajor,CblasBMatrix,CblasNoTrans,M,N,K,b,N,bp);
  for(int r=0;r<REPS+1;r++){double s=now(); cblas_gemm_bf16bf16f32_compute(CblasRowMajor,CblasNoTrans,CblasPacked,M,N,K,1.0f,a,K,bp,N,0.0f,c,N); if(r) t[r-1]=now()-s;}
  qsort(t,REPS,sizeof(double),cmp); printf("mkl bf16 packed-B %dx%dx%d: %.0f Gop/s (median %.1f us)\n",M,N,K,ops/t[REPS/2]/1e9,t[REPS/2]*1e6);
  /* s8u8 plain */
  for(int r=0;r<REPS+1;r++){double s=now(); cblas_gemm_s8u8s32(CblasRowMajor,CblasNoTrans,CblasNoTrans,CblasFixOffset,M,N,K,1.0f,a8,K,0,b8,N,0,0.0f,c32,N,&co); if(r) t[r-1]=now()-s;}
  qsort(t,REPS,sizeof(double),cmp); printf("mkl s8u8 %dx%dx%d: %.0f Gop/s (median %.1f us)\n",M,N,K,ops/t[REPS/2]/1e9,t[REPS/2]*1e6);
  sz=cblas_gemm_s8u8s32_pack_get_size(CblasBMatrix,M,N,K); void*b8p=mkl_malloc(sz,64);
  cblas_gemm_s8u8s32_pack(CblasRowMajor,CblasBMatrix,CblasNoTrans,M,N,K,b8,N,b8p);
  for(int r=0;r<REPS+1;r++){double s=now(); cblas_gemm_s8u8s32_compute(CblasRowMajor,CblasNoTrans,CblasPacked,CblasFixOffset,M,N,K,1.0f,a8,K,0,b8p,N,0,0.0f,c32,N,&co); if(r) t[r-1]=now()-s;}
  qsort(t,REPS,sizeof(double),cmp); printf("mkl s8u8 packed-B %dx%dx%d: %.0f Gop/s (median %.1f us)\n",M,N,K,ops/t[REPS/2]/1e9,t[REPS/2]*1e6);
  return 0;
}
